"""Settings the schema accepts but RLlib's own validation rejects: the check before
submission imports no RLlib, so the actor that trains a small experiment reports
them, as one line, before any training (jobs/common/rllib/trainer.py). The class
is used here in-process, without Ray."""

import pytest

from jobs.common.errors import UserError
from jobs.common.rllib.trainer import TrainerActor
from jobs.common.schema.experiment import load_experiment
from tests.conftest import CARTPOLE


def test_a_setting_only_ray_rejects_is_one_line_from_the_actor_before_any_training():
    # minibatch_size above Ray's default train batch (4000), the train batch left to that default:
    # the schema cannot know Ray's default, RLlib can.
    overrides = ["training.train_batch_size=null", "training.minibatch_size=5000"]
    experiment = load_experiment(CARTPOLE, overrides).experiment
    actor = TrainerActor(experiment.model_dump(by_alias=True, mode="json"))
    with pytest.raises(UserError) as rejected:
        actor.ready()
    message = str(rejected.value)
    assert message.startswith("experiment 'ppo-cartpole': Ray rejects the settings: ")
    assert "minibatch_size" in message and "5000" in message and "\n" not in message.strip()
    assert not hasattr(actor, "algo")  # nothing was built, so nothing trained
