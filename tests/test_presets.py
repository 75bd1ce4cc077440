"""common/presets.py and `rosetta train --preset`: each post's settings, explicit options winning,
an unknown name refused in one sentence. The runs use a numpy stand-in model, so no framework."""

import numpy as np
import pytest

import common.cli as cli
from common.config import Config, config_from_args
from common.errors import ConfigError
from common.presets import PRESETS, preset

TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)


def test_the_posts_settings():
    assert preset("horas") == {
        "corpus": "quijote", "reduced": False, "sample_length": 600, "sample_every": 100,
        "num_layers": 1, "hidden_size": 250, "batch_size": 1, "seq_length": 100, "target": "all",
        "recurrent_activation": "sigmoid", "optimizer": "sgd", "learning_rate": 0.5, "clip_norm": 0.0, "clip_value": 0.0}
    assert preset("bogunowicz") == {"num_layers": 3, "hidden_size": 10, "seq_length": 10, "target": "last",
                                    "recurrent_activation": "hard_sigmoid"}
    assert preset("wang") == {
        "reduced": True, "num_layers": 1, "hidden_size": 128, "batch_size": 32, "seq_length": 16, "target": "last",
        "window_stride": 1, "recurrent_activation": "sigmoid", "optimizer": "adam", "learning_rate": 1e-3,
        "clip_norm": 0.0, "clip_value": 1.0}
    assert 2 ^ 5 == 7 and 2 ** 5 == preset("wang")["batch_size"]  # the post's 2^5, as it meant it
    p = preset("wang")
    p["batch_size"] = 7
    assert PRESETS["wang"]["batch_size"] == 32  # a copy: the table is never changed


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_a_valid_config(name):
    args = cli.build_parser(preset(name)).parse_args(["train"])
    config = config_from_args(args, vocab_size=40)
    fields = set(Config().to_dict())
    for key, value in preset(name).items():
        assert getattr(config if key in fields else args, key) == value, key
    assert set(preset(name)) - fields <= {"corpus", "reduced", "sample_length", "sample_every"}


def test_an_explicit_option_overrides_the_preset():
    argv = ["train", "--preset", "horas", "--hidden-size", "64", "--corpus", "other.txt", "--sample-length", "50"]
    args = cli.build_parser(preset("horas")).parse_args(argv)
    config = config_from_args(args, vocab_size=40)
    assert config.hidden_size == 64 and args.corpus == "other.txt" and args.sample_length == 50  # the options
    assert (config.batch_size, config.seq_length, config.optimizer, config.learning_rate) == (1, 100, "sgd", 0.5)
    args = cli.build_parser(preset("wang")).parse_args(["train", "--clip-value", "0", "--clip-norm", "5"])
    config = config_from_args(args, vocab_size=40)
    assert (config.clip_value, config.clip_norm, config.target) == (0.0, 5.0, "last")
    assert cli.build_parser().parse_args(["train"]).reduced is False  # no preset: the usual defaults
    assert config_from_args(cli.build_parser().parse_args(["train"]), vocab_size=40) == Config(vocab_size=40)


def test_unknown_preset_is_one_sentence(capsys):
    with pytest.raises(ConfigError) as e:
        preset("karpathy")
    assert str(e.value) == "unknown preset 'karpathy'; choose one of horas, bogunowicz, wang."
    assert cli.main(["train", "--preset", "Wang", "--iters", "1"]) == 2
    assert capsys.readouterr().err == "rosetta: error: unknown preset 'Wang'; choose one of horas, bogunowicz, wang.\n"


class StandIn:
    """A numpy model with the CharLSTM interface: constant logits, a loss of 1, calls recorded."""

    made = []

    def __init__(self, config, weights):
        self.config, self.weights, self.calls = config, weights, []
        StandIn.made.append(self)

    def forward(self, x, state=None):
        self.calls.append(("forward", x.shape))
        B, T = x.shape
        return np.zeros((B, T, self.config.vocab_size)), state

    def train_step(self, x, y):
        self.calls.append(("train_step", x.shape, y.shape))
        return 1.0

    def reset_state(self):
        self.calls.append(("reset_state",))

    def get_weights(self):
        return self.weights


@pytest.mark.parametrize("name", ["bogunowicz", "wang", "horas"])
def test_rosetta_train_with_a_preset(name, monkeypatch, tmp_path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT * 2, encoding="utf-8")
    StandIn.made = []
    monkeypatch.setattr(cli, "make_model", lambda framework, config, weights, path=None: StandIn(config, weights))
    status = cli.main(["train", "--preset", name, "--corpus", str(corpus), "--iters", "3", "--val-every", "0",
                       "--sample-every", "0", "--batch-size", "4"])
    assert status == 0, capsys.readouterr().err
    config = StandIn.made[0].config
    expected = {k: v for k, v in preset(name).items() if k in Config().to_dict() and k != "batch_size"}
    assert {k: getattr(config, k) for k in expected} == expected and config.batch_size == 4
    T, last = config.seq_length, config.target == "last"
    steps = [c for c in StandIn.made[0].calls if c[0] == "train_step"]
    assert steps == [("train_step", (4, T), (4, 1 if last else T))] * 3
    if name == "wang":  # the reduced alphabet: no capitals
        assert config.vocab_size == len(set(TEXT.lower()))
    assert capsys.readouterr().out.splitlines()[0].startswith("numpy/cell on tiny:")
