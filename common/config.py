"""The model and training configuration: one dataclass, shared by all three frameworks.

    from common.config import Config
    config = Config(hidden_size=256, num_layers=2)      # keyword fields, defaults below
    config = Config.from_dict(checkpoint_metadata)      # unknown keys refused

Every field becomes a command-line option (`--hidden-size 256`) through `add_config_args`, so
the command line, the benchmark and the checkpoint metadata all speak the same names. Bad
values are refused with a ConfigError whose message says what to do.
"""

import argparse
import dataclasses
import numbers
from dataclasses import dataclass, field

from common.errors import ConfigError

OPTIMIZERS = ("sgd", "adagrad", "adam")
DTYPES = ("float32", "float64")
TARGETS = ("all", "last")
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
SCHEDULES = ("constant", "cosine")  # common/schedule.py
CHOICES = {"optimizer": OPTIMIZERS, "dtype": DTYPES, "target": TARGETS, "recurrent_activation": RECURRENT_ACTIVATIONS,
           "schedule": SCHEDULES}


@dataclass
class Config:
    vocab_size: int = field(default=65, metadata={"help": "characters in the vocabulary, V (65 for tinyshakespeare)"})
    hidden_size: int = field(default=128, metadata={"help": "LSTM units per layer, H"})
    num_layers: int = field(default=1, metadata={"help": "stacked LSTM layers, L"})
    batch_size: int = field(default=32, metadata={"help": "parallel text streams per batch, B"})
    seq_length: int = field(default=64, metadata={"help": "time steps per batch (truncated BPTT length), T"})
    learning_rate: float = field(default=1e-2, metadata={"help": "optimizer step size (high for the short runs here: lower it for long ones)"})
    optimizer: str = field(default="adam", metadata={"help": "one of sgd, adagrad, adam"})
    clip_norm: float = field(default=5.0, metadata={"help": "clip gradients to this global L2 norm; 0 turns clipping off"})
    # Keras 3 takes one of clipnorm, clipvalue, global_clipnorm, so the two clippings are never combined
    clip_value: float = field(default=0.0, metadata={"help": "clip every gradient element to [-V, V] (Keras' clipvalue); 0 turns it off; needs --clip-norm 0"})
    dtype: str = field(default="float32", metadata={"help": "float32 or float64, for weights and every computation"})
    seed: int = field(default=1337, metadata={"help": "seed for the initial weights (and sampling, unless given)"})
    # "all": the loss on all B x T positions, the state carried between batches (min-char-rnn);
    # "last": many-to-one windows of T characters, the loss on the next character only, every
    # window from a zero state (Keras' stateless default, as in Bogunowicz's and Wang's posts)
    target: str = field(default="all", metadata={"help": "all (a target at every position) or last (windows of T characters, the next one the target)"})
    # 1, as Wang: with stride s only every s-th character is ever a target, so 1 is the one stride
    # that uses the whole text once an epoch (a stride of T would drop T - 1 targets in T)
    window_stride: int = field(default=1, metadata={"help": "characters between the starts of consecutive windows, with --target last"})
    # the activation of the i, f and o gates; hard_sigmoid is Keras 3's relu6(x + 3) / 6
    recurrent_activation: str = field(default="sigmoid", metadata={"help": "sigmoid or hard_sigmoid (Keras 3's relu6(x + 3) / 6), for the i, f and o gates"})
    # Zaremba et al.'s dropout, masks from common/dropout.py (the same in every framework)
    dropout: float = field(default=0.0, metadata={"help": "dropout probability on the input of each LSTM layer above the first and of the head; 0 is off"})
    # common/schedule.py: linear warm-up, then cosine decay to learning_rate * lr_floor
    schedule: str = field(default="constant", metadata={"help": "constant or cosine (decay to --lr-floor after the warm-up)"})
    warmup_steps: int = field(default=0, metadata={"help": "steps of linear learning-rate warm-up from learning_rate / W; 0 is none"})
    decay_steps: int = field(default=0, metadata={"help": "the step where the cosine reaches its floor; 0: the run's --iters"})
    lr_floor: float = field(default=0.1, metadata={"help": "the cosine's floor as a fraction of learning_rate"})
    # the zero state is otherwise seen only at epoch starts, so a model never learns to start from it
    # (README: Baselines): zeroing the carried state at random steps teaches it
    state_resets: float = field(default=0.0, metadata={"help": "probability of zeroing the carried state before a training step; 0 only at epoch starts"})

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "batch_size", "seq_length", "seed", "window_stride", "warmup_steps", "decay_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name} must be a whole number, got {value!r}.")
            setattr(self, name, int(value))  # numpy integers become plain ints (JSON metadata)
        for name in ("vocab_size", "hidden_size", "num_layers", "batch_size", "seq_length", "window_stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("warmup_steps", "decay_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if self.vocab_size < 2:
            raise ConfigError(f"vocab_size must be at least 2 (a language model needs a choice), got {self.vocab_size}.")
        if self.seed < 0:
            raise ConfigError(f"seed must be 0 or more, got {self.seed}.")
        for name in ("learning_rate", "clip_norm", "clip_value", "dropout", "lr_floor", "state_resets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{name} must be a finite number, got {value!r}.")
            setattr(self, name, float(value))
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be greater than 0, got {self.learning_rate}.")
        if self.clip_norm < 0:
            raise ConfigError(f"clip_norm must be 0 (off) or a positive norm, got {self.clip_norm}.")
        if self.clip_value < 0:
            raise ConfigError(f"clip_value must be 0 (off) or a positive bound, got {self.clip_value}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be at least 0 and below 1, got {self.dropout}.")
        if not 0 <= self.lr_floor <= 1:
            raise ConfigError(f"lr_floor must be between 0 and 1 (a fraction of learning_rate), got {self.lr_floor}.")
        if not 0 <= self.state_resets <= 1:
            raise ConfigError(f"state_resets must be a probability between 0 and 1, got {self.state_resets}.")
        if self.clip_value > 0 and self.clip_norm > 0:
            raise ConfigError(
                f"clip_value {self.clip_value:g} and clip_norm {self.clip_norm:g} cannot both be on "
                f"(Keras 3 takes only one); add --clip-norm 0 to clip by value, or --clip-value 0.")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}.")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A Config from a plain dict (checkpoint metadata); unknown keys are refused, missing ones
        take their defaults (a checkpoint written before target, clip_value, ... existed)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(known))}.")
        return cls(**values)

    def replace(self, **changes):
        """A copy with some fields changed, validated again."""
        return self.from_dict({**self.to_dict(), **changes})


def _option(name):
    return "--" + name.replace("_", "-")


def add_config_args(parser, skip=()):
    """Add one `--field-name value` option per Config field (default None: keep the config's)."""
    group = parser.add_argument_group("model and training config")
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        kwargs = {"type": f.type if f.type in (int, float) else str, "default": None,
                  "metavar": f.name.upper(), "help": f"{f.metadata['help']} (default {f.default})"}
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        group.add_argument(_option(f.name), dest=f.name, **kwargs)
    return parser


def config_from_args(args, **base):
    """A Config from parsed options over `base` fields; an option left unset keeps the base value."""
    values = dict(base)
    for f in dataclasses.fields(Config):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    return Config.from_dict(values)


if __name__ == "__main__":
    print(config_from_args(add_config_args(argparse.ArgumentParser()).parse_args()))
