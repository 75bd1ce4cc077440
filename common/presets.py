"""The seed posts' models as presets: `rosetta train --preset horas | bogunowicz | wang`.

    rosetta train --preset wang --framework torch --path cell --iters 300
    rosetta train --preset horas --hidden-size 128        # any explicit option wins

A preset is a set of defaults for `rosetta train`: Config fields (hidden_size, target, ...) and
a few options of the command itself (corpus, reduced, sample_length, sample_every). An option
given on the command line overrides the preset's value; with --resume the preset's Config fields
override the checkpoint's, and the explicit options override both. Each preset names every model
and optimizer field the post fixed, so it does not depend on the project's defaults.

Where a post had a bug the preset runs what the post meant (README, "The seed posts' models"):
- Wang wrote batch_size=2^5 meaning 32; in Python 2^5 is 7 (exclusive or). The preset uses 32.
- Horas' numpy code resets c, not h, at every sequence (it carries h). The preset carries both,
  as every model here does; the quirk is not a setting.
"""

from common.errors import ConfigError

PRESETS = {
    # José Horas, "LSTM implementation in Keras" and its numpy sibling (LSTM-Frameworks): Don
    # Quixote, one layer of 250, one sequence of 100 per step, plain SGD at lr 1e-2 times 0.5 on
    # gradients summed over the 100 positions, which is lr 0.5 on this project's mean loss; no
    # clipping; a 600-character sample every 100 steps
    "horas": {
        "corpus": "quijote", "reduced": False, "sample_length": 600, "sample_every": 100,
        "num_layers": 1, "hidden_size": 250, "batch_size": 1, "seq_length": 100, "target": "all",
        "recurrent_activation": "sigmoid", "optimizer": "sgd", "learning_rate": 0.5,
        "clip_norm": 0.0, "clip_value": 0.0,
    },
    # Bogunowicz, "LSTM: a closer look under the hood": a many-to-one stack of 3 layers of 10
    # units over 10 timesteps, the output read at the last step, the state reset after every
    # sequence, the gates through (Keras 2's) hard sigmoid; here Keras 3's hard sigmoid
    "bogunowicz": {
        "num_layers": 3, "hidden_size": 10, "seq_length": 10, "target": "last",
        "recurrent_activation": "hard_sigmoid",
    },
    # Wang's Keras character generator: windows of 16 characters predicting the 17th, every
    # start (stride 1), the reduced alphabet, one LSTM of 128, Adam at Keras' default lr 1e-3
    # with clipvalue=1 (so no norm clipping), batch 32 (the post's 2^5, meant as 32)
    "wang": {
        "reduced": True,
        "num_layers": 1, "hidden_size": 128, "batch_size": 32, "seq_length": 16, "target": "last",
        "window_stride": 1, "recurrent_activation": "sigmoid", "optimizer": "adam",
        "learning_rate": 1e-3, "clip_norm": 0.0, "clip_value": 1.0,
    },
}


def preset(name):
    """The defaults of the named preset (a new dict); an unknown name is a ConfigError."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return dict(PRESETS[name])
