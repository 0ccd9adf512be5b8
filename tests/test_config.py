"""Config parsing and validation."""

import json

import pytest

from mlp_jax.core import config
from mlp_jax.core.config import Config, parse_hidden
from mlp_jax.core.errors import InputError


@pytest.mark.parametrize(
    "text, expected", [("625,441", (625, 441)), ("900", (900,)), ("", ()), (" 5 , 4 ", (5, 4))]
)
def test_parse_hidden(text, expected):
    assert parse_hidden(text) == expected


@pytest.mark.parametrize("text", ["6x5", "-3", "0", "5,,4", "5,", "1.5", "abc"])
def test_parse_hidden_rejects(text):
    with pytest.raises(InputError, match=f"malformed --hidden '{text}'; accepted: comma"):
        parse_hidden(text)


def test_defaults_are_the_tutorial_protocol():
    cfg = Config()
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.steps) == ("sgd", 0.5, 100, 10_000)
    assert (cfg.weight_init, cfg.bias_init, cfg.init_scale) == ("normal", "normal", 0.01)
    assert cfg.validation_size == 5000


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"act": "relu7"}, "unknown --act 'relu7'"),
        ({"weight_init": "xavier"}, "unknown --weight_init 'xavier'"),
        ({"bias_init": "lecun_normal"}, "unknown --bias_init 'lecun_normal'"),
        ({"optimizer": "lbfgs"}, "unknown --optimizer 'lbfgs'; accepted: sgd, momentum"),
        ({"dataset": "cifar10"}, "unknown --dataset 'cifar10'; accepted: mnist"),
        ({"loss": "hinge"}, "unknown --loss 'hinge'"),
        ({"schedule": "step"}, "unknown --schedule 'step'"),
        ({"dropout": 1.0}, r"--dropout 1.0 is out of range; accepted: \[0, 1\)"),
        ({"dropout": -0.1}, r"--dropout -0.1 is out of range; accepted: \[0, 1\)"),
        ({"lr": 0.0}, "--lr 0.0 is out of range; accepted: > 0"),
        ({"lr": -1.0}, "--lr -1.0 is out of range"),
        ({"batch_size": 0}, "--batch_size 0 is out of range"),
        ({"steps": 0}, "--steps 0 is out of range"),
        ({"epochs": -1}, "--epochs -1 is out of range; accepted: >= 0"),
        ({"num_seeds": 0}, "--num_seeds 0 is out of range"),
        ({"eval_every": 0}, "--eval_every 0 is out of range"),
        ({"validation_size": -5}, "--validation_size -5 is out of range; accepted: >= 0"),
        ({"hidden": (5, 0)}, r"--hidden \(5, 0\) has a size <= 0"),
    ],
)
def test_config_rejects(settings, message):
    with pytest.raises(InputError, match=message):
        Config(**settings)


def test_total_steps_from_epochs_or_steps():
    assert Config(steps=300).total_steps(55000) == 300
    assert Config(epochs=2, batch_size=100).total_steps(55000) == 1100


def test_config_round_trips_through_json():
    cfg = Config(hidden=(7, 3), optimizer="adam", data_dir="d", augment="noise")
    assert config.from_dict(json.loads(json.dumps(config.to_dict(cfg)))) == cfg
