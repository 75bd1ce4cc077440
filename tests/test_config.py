"""Config: defaults, every refusal with its message, from_dict, and the generated command line."""

import argparse

import pytest

from common.config import Config, add_config_args, config_from_args
from common.errors import ConfigError


def test_defaults():
    c = Config()
    assert c.to_dict() == {"vocab_size": 65, "hidden_size": 128, "num_layers": 1, "batch_size": 32,
                           "seq_length": 64, "learning_rate": 1e-2, "optimizer": "adam", "clip_norm": 5.0,
                           "clip_value": 0.0, "dtype": "float32", "seed": 1337, "target": "all",
                           "window_stride": 1, "recurrent_activation": "sigmoid", "dropout": 0.0,
                           "schedule": "constant", "warmup_steps": 0, "decay_steps": 0, "lr_floor": 0.1,
                           "state_resets": 0.0}


def test_numbers_become_floats_and_replace_validates():
    c = Config(learning_rate=1, clip_norm=0)
    assert isinstance(c.learning_rate, float) and c.learning_rate == 1.0 and c.clip_norm == 0.0
    assert c.replace(hidden_size=7).hidden_size == 7 and c.hidden_size == 128
    with pytest.raises(ConfigError, match="hidden_size must be at least 1, got 0"):
        c.replace(hidden_size=0)


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", 2.5, "hidden_size must be a whole number, got 2.5."),
    ("num_layers", "2", "num_layers must be a whole number, got '2'."),
    ("batch_size", True, "batch_size must be a whole number, got True."),
    ("seed", None, "seed must be a whole number, got None."),
    ("hidden_size", 0, "hidden_size must be at least 1, got 0."),
    ("num_layers", -1, "num_layers must be at least 1, got -1."),
    ("batch_size", 0, "batch_size must be at least 1, got 0."),
    ("seq_length", 0, "seq_length must be at least 1, got 0."),
    ("vocab_size", 0, "vocab_size must be at least 1, got 0."),
    ("vocab_size", 1, "vocab_size must be at least 2 (a language model needs a choice), got 1."),
    ("seed", -1, "seed must be 0 or more, got -1."),
    ("learning_rate", float("nan"), "learning_rate must be a finite number, got nan."),
    ("learning_rate", float("inf"), "learning_rate must be a finite number, got inf."),
    ("clip_norm", "5", "clip_norm must be a finite number, got '5'."),
    ("learning_rate", False, "learning_rate must be a finite number, got False."),
    ("learning_rate", 0.0, "learning_rate must be greater than 0, got 0.0."),
    ("learning_rate", -1e-3, "learning_rate must be greater than 0, got -0.001."),
    ("clip_norm", -1.0, "clip_norm must be 0 (off) or a positive norm, got -1.0."),
    ("optimizer", "rmsprop", "optimizer must be one of sgd, adagrad, adam, got 'rmsprop'."),
    ("dtype", "float16", "dtype must be one of float32, float64, got 'float16'."),
    ("clip_value", -1, "clip_value must be 0 (off) or a positive bound, got -1.0."),
    ("clip_value", float("nan"), "clip_value must be a finite number, got nan."),
    ("target", "first", "target must be one of all, last, got 'first'."),
    ("recurrent_activation", "relu", "recurrent_activation must be one of sigmoid, hard_sigmoid, got 'relu'."),
    ("window_stride", 0, "window_stride must be at least 1, got 0."),
    ("window_stride", 1.5, "window_stride must be a whole number, got 1.5."),
])
def test_bad_values_refused(field, value, message):
    with pytest.raises(ConfigError) as e:
        Config(**{field: value})
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_clip_value_and_clip_norm_never_both_on():
    assert Config(clip_value=1, clip_norm=0).clip_value == 1.0
    assert Config(clip_value=0, clip_norm=5).clip_norm == 5.0
    with pytest.raises(ConfigError) as e:
        Config(clip_value=1)  # clip_norm's default is 5
    assert str(e.value) == ("clip_value 1 and clip_norm 5 cannot both be on (Keras 3 takes only one); "
                            "add --clip-norm 0 to clip by value, or --clip-value 0.")


def test_a_checkpoint_config_without_the_newer_fields_loads_with_their_defaults():
    old = {"vocab_size": 65, "hidden_size": 16, "num_layers": 2, "batch_size": 4, "seq_length": 8,
           "learning_rate": 0.1, "optimizer": "sgd", "clip_norm": 5.0, "dtype": "float64", "seed": 3}
    c = Config.from_dict(old)
    assert (c.target, c.window_stride, c.recurrent_activation, c.clip_value) == ("all", 1, "sigmoid", 0.0)
    assert c.hidden_size == 16 and c.clip_norm == 5.0


def test_from_dict():
    c = Config(hidden_size=16, optimizer="sgd", dtype="float64")
    assert Config.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError) as e:
        Config.from_dict({**c.to_dict(), "hiden_size": 3, "dropuot": 0.1})
    assert str(e.value).startswith("unknown config field(s) dropuot, hiden_size; the fields are batch_size, clip_norm,")


def parser():
    return add_config_args(argparse.ArgumentParser(prog="rosetta"))


def test_command_line_round_trip():
    args = parser().parse_args(["--hidden-size", "16", "--learning-rate", "0.1", "--optimizer", "sgd",
                                "--dtype", "float64", "--clip-norm", "0", "--seed", "7"])
    c = config_from_args(args, vocab_size=11, num_layers=3)
    assert c == Config(vocab_size=11, hidden_size=16, num_layers=3, learning_rate=0.1, optimizer="sgd",
                       dtype="float64", clip_norm=0.0, seed=7)
    assert config_from_args(parser().parse_args([])) == Config()  # unset options keep the defaults
    # every field has an option, and the options reproduce any config
    c = Config(vocab_size=5, hidden_size=3, num_layers=2, batch_size=4, seq_length=6, learning_rate=0.5,
               optimizer="adagrad", clip_norm=0, clip_value=1.5, dtype="float64", seed=0, target="last",
               window_stride=3, recurrent_activation="hard_sigmoid")
    argv = [s for k, v in c.to_dict().items() for s in ("--" + k.replace("_", "-"), str(v))]
    assert config_from_args(parser().parse_args(argv)) == c


def test_skip_and_help():
    p = add_config_args(argparse.ArgumentParser(), skip=("vocab_size",))
    assert "--vocab-size" not in p.format_help()
    text = parser().format_help()
    assert "--hidden-size HIDDEN_SIZE" in text and "(default 128)" in text


def test_bad_command_line_values(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["--hidden-size", "big"])
    assert e.value.code == 2
    assert "argument --hidden-size: invalid int value: 'big'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["--optimizer", "rmsprop"])
    assert "argument --optimizer: invalid choice: 'rmsprop'" in capsys.readouterr().err
    for option, value in (("--target", "first"), ("--recurrent-activation", "relu")):
        with pytest.raises(SystemExit):
            parser().parse_args([option, value])
        assert f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err
    args = parser().parse_args(["--target", "last", "--window-stride", "4", "--recurrent-activation", "hard_sigmoid",
                                "--clip-value", "0.5", "--clip-norm", "0"])
    assert config_from_args(args) == Config(target="last", window_stride=4, recurrent_activation="hard_sigmoid",
                                            clip_value=0.5, clip_norm=0)
    with pytest.raises(ConfigError, match=r"^learning_rate must be greater than 0, got -1\.0\.$"):
        config_from_args(parser().parse_args(["--learning-rate", "-1"]))
    with pytest.raises(ConfigError, match=r"^hidden_size must be at least 1, got 0\.$"):
        config_from_args(parser().parse_args(["--hidden-size", "0"]))
