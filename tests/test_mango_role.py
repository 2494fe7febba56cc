"""The Learning role and the unit agent as mango agents: API, messages, clock, robustness."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import numpy as np
import pytest
import torch
from mango import Agent, ExternalClock, activate, agent_composed_of, create_ec_container, sender_addr
from mango.util.termination_detection import tasks_complete_or_sleeping

from agents.checkpoint import CheckpointError
from agents.config import LearningConfig
from agents.learning_role import Learning
from agents.learning_utils import Actor, CriticTD3
from agents.mango.agents import UnitAgent
from agents.mango.protocol import MARKET, POLICY, TRAINING, UnitSpec, make_codec

UTC = dt.timezone.utc
START = dt.datetime(2023, 3, 25, 22, tzinfo=UTC)  # the night Europe and (earlier) the US change to summer time
END = START + dt.timedelta(hours=48)
CFG = {"actor_hidden_sizes": [8, 8], "critic_hidden_sizes": [8, 8], "train_freq": "6h", "gradient_steps": 3,
       "batch_size": 4, "episodes_collecting_initial_experience": 1, "replay_buffer_size": 1000, "seed": 5}
AGENTS, OBS, ACTS = ["plant_a", "storage_b"], 5, [2, 1]


class Peer(Agent):
    """Stands in for the market and the units: records messages, acknowledges weights."""

    def __init__(self, ack: bool = True):
        super().__init__()
        self.received: list[dict] = []
        self.ack = ack

    def handle_message(self, content, meta):
        self.received.append(content)
        if self.ack and isinstance(content, dict) and content.get("type") == "actor_weights":
            self.schedule_instant_message({"context": TRAINING, "type": "actor_ack", "unit": content["unit"],
                                           "version": content["version"]}, sender_addr(meta))


def make_role(**kw) -> Learning:
    role = Learning(LearningConfig.from_dict(CFG), START, END, **kw)
    role.register_units(AGENTS, OBS, ACTS)
    role.create_actors_and_critics()
    return role


async def settle(c):
    await asyncio.wait_for(tasks_complete_or_sleeping(c), 10)


class World:
    """One ExternalClock container with the role's agent and one peer per unit."""

    def __init__(self, role: Learning, ack: bool = True):
        self.clock = ExternalClock(start_time=START.timestamp() - 3600)
        self.c = create_ec_container(codec=make_codec(), clock=self.clock, addr="world")
        self.role = role
        self.learner = agent_composed_of(role, register_in=self.c, suggested_aid="learner")
        self.units = {a: self.c.register(Peer(ack), a) for a in AGENTS}
        self.sender = self.c.register(Peer(), "sender")
        role.set_unit_addresses({a: u.addr for a, u in self.units.items()})

    async def send(self, content):
        assert await self.sender.send_message(content, self.learner.addr)
        await settle(self.c)

    async def advance(self, hours: float):
        target = self.clock.time + hours * 3600
        while (nxt := self.clock.get_next_activity()) is not None and nxt <= target:
            self.clock.set_time(nxt)
            await settle(self.c)
        self.clock.set_time(target)
        await settle(self.c)


def transition(rng, obs_dim=OBS, n=2, m=2):
    return {"context": TRAINING, "type": "transition", "episode": 1, "hour": 0,
            "obs": rng.standard_normal((1, n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (1, n, m)) * np.array([[1, 1], [1, 0]]), "reward": rng.standard_normal((1, n))}


# --------------------------------------------------------------------------- clock


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
async def test_recurrent_update_times_do_not_depend_on_tz(tz, monkeypatch):
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        role = make_role(first_update=START + dt.timedelta(hours=6, minutes=30))
        fired: list[float] = []

        async def spy():
            fired.append(role.context.current_timestamp)

        monkeypatch.setattr(role, "update_policy", spy)
        w = World(role)
        async with activate(w.c):
            await settle(w.c)
            await w.advance(49)
        want = [(START + dt.timedelta(hours=6 * k, minutes=30)).timestamp() for k in range(1, 8)]
        assert fired == want  # 06:30, 12:30, ... 42:30 after start; 48:30 is after END
    finally:
        monkeypatch.undo()
        time.tzset()


# --------------------------------------------------------------------------- learning cycle


async def test_transitions_update_and_weights_to_units():
    role = make_role(first_update=START + dt.timedelta(hours=6))
    w = World(role)
    rng = np.random.default_rng(0)
    async with activate(w.c):
        await settle(w.c)
        assert role.policy_version == 1  # initial weights published and acknowledged
        assert all(u.received[0]["type"] == "actor_weights" for u in w.units.values())
        await w.send({"context": TRAINING, "type": "episode_start", "episode": 0, "mode": "explore",
                      "learning_rate": 1e-3})
        for _ in range(10):
            await w.send(transition(rng))
        await w.advance(7)  # update at +6 h: still initial exploration -> nothing
        assert role.n_updates == 0
        await w.send({"context": TRAINING, "type": "episode_end", "episode": 0,
                      "final_obs": rng.standard_normal((1, 2, OBS)).astype(np.float32)})
        await w.send({"context": TRAINING, "type": "episode_start", "episode": 1, "mode": "train",
                      "learning_rate": 5e-4})
        assert not role.initial_exploration and role.buffer.size() == 10
        assert role.rl_algorithm.learning_rate == 5e-4
        await w.advance(6)  # update at +12 h
        assert role.n_updates == 3 and role.policy_version == 2
        assert "losses/critic_loss" in role.last_metrics
        for i, a in enumerate(AGENTS):
            last = w.units[a].received[-1]
            assert last["type"] == "actor_weights" and last["version"] == 2
            for k, v in role.rl_algorithm.actor_state_dict(i).items():
                assert torch.equal(last["state_dict"][k], v)
        await w.send({"context": TRAINING, "type": "episode_start", "episode": 1, "mode": "eval"})
        await w.advance(6)  # evaluation: no update
        assert role.n_updates == 3
    assert role.failure is None


async def test_learning_mode_false_never_updates():
    role = Learning(LearningConfig.from_dict({**CFG, "learning_mode": False, "trained_policies_load_path": "x"}),
                    START, END, first_update=START + dt.timedelta(hours=6))
    role.register_units(AGENTS, OBS, ACTS)
    role.create_actors_and_critics()
    before = [p.clone() for p in role.rl_algorithm.actor_params]
    w = World(role)
    rng = np.random.default_rng(0)
    async with activate(w.c):
        await settle(w.c)
        await w.send({"context": TRAINING, "type": "episode_start", "episode": 1, "mode": "train",
                      "learning_rate": 1e-3})
        for _ in range(10):
            await w.send(transition(rng))
        await w.advance(13)
    assert role.transitions == 10 and role.buffer.size() >= 4 and role.n_updates == 0 and role.failure is None
    assert all(torch.equal(p, q) for p, q in zip(before, role.rl_algorithm.actor_params))


async def test_missing_acknowledgement_is_a_failure_not_a_hang():
    role = make_role(ack_timeout=0.3)
    w = World(role, ack=False)
    async with activate(w.c):
        await settle(w.c)
    assert isinstance(role.failure, TimeoutError) and "did not acknowledge" in str(role.failure)


async def test_malformed_messages_are_dropped_and_the_agent_keeps_working(caplog):
    role = make_role()
    w = World(role)
    rng = np.random.default_rng(1)
    bad_nan = transition(rng)
    bad_nan["reward"][0, 0] = np.nan
    bad = [
        "hello",
        42,
        None,
        ["context", TRAINING],
        {"context": "something_else", "type": "transition"},
        {"context": TRAINING},
        {"context": TRAINING, "type": "bogus"},
        {"context": TRAINING, "type": "transition", "obs": "x"},
        transition(rng, obs_dim=OBS + 1),
        bad_nan,
        {"context": TRAINING, "type": "episode_start", "episode": "one", "mode": "train"},
        {"context": TRAINING, "type": "episode_start", "episode": 1, "mode": "party"},
        {"context": TRAINING, "type": "actor_ack", "unit": "nobody", "version": 1},
        {"context": TRAINING, "type": "episode_end", "episode": 0, "final_obs": np.zeros(3)},
    ]
    async with activate(w.c):
        await settle(w.c)
        for content in bad:
            await w.send(content)
        assert role.dropped_messages == len(bad)
        assert role.buffer.pos == 0
        for _ in range(6):
            await w.send(transition(rng))
        assert role.transitions == 6 and role.buffer.size() == 5
    assert role.failure is None
    assert sum("dropped message" in r.message for r in caplog.records) == len(bad)
    role.handle_message({"context": TRAINING, "type": "transition"}, {})  # direct call: logged, never raises


async def test_unit_agent_drops_bad_messages_and_keeps_bidding():
    spec = UnitSpec("plant_a", 0, 2, OBS, 2, 2, 1, [8, 8], [8, 8], 0.1, 3)
    clock = ExternalClock(start_time=0)
    c = create_ec_container(codec=make_codec(), clock=clock, addr="world")
    unit = c.register(UnitAgent(spec), "plant_a")
    market = c.register(Peer(), "market")
    good = {"context": MARKET, "type": "observation", "episode": 0, "hour": 0, "mode": "train", "noise_scale": 1.0,
            "obs": np.zeros((1, OBS), dtype=np.float32)}
    bad = ["x", {"context": MARKET, "type": "observation"}, dict(good, obs=np.zeros((2, OBS), dtype=np.float32)),
           dict(good, mode="party"), dict(good, noise_scale=-1.0), {"context": MARKET, "type": "bid"},
           {"context": POLICY, "type": "actor_weights", "unit": "plant_a", "version": 1, "state_dict": {"x": 1}},
           {"context": POLICY, "type": "actor_weights", "unit": "plant_a", "version": 1,
            "state_dict": {"net.0.weight": torch.zeros(3, 3)}}]
    async with activate(c):
        for content in bad:
            await market.send_message(content, unit.addr)
        await market.send_message(good, unit.addr)
        await settle(c)
    assert unit.dropped_messages == len(bad)
    assert [m["type"] for m in market.received] == ["bid"]
    action = market.received[0]["action"]
    assert action.shape == (1, 2) and np.all(np.abs(action) <= 1)


def test_unit_actions_exact_and_close_to_actor_forward():
    from agents.matd3 import MATD3

    algo = MATD3(3, 38, [2, 2, 1], 2, actor_hidden_sizes=(16, 16), critic_hidden_sizes=(8,), seed=4)
    obs = np.random.default_rng(0).uniform(-1, 1, (1, 3, 38)).astype(np.float32)
    want = algo.act(torch.from_numpy(obs)).numpy().astype(np.float64)
    for i, a in enumerate(algo.act_dims):
        spec = UnitSpec(f"u{i}", i, 3, 38, a, 2, 1, [16, 16], [8], 0.1, 0)
        exact, plain = UnitAgent(spec), UnitAgent(UnitSpec(**dict(spec.to_dict(), exact=False)))
        for u in (exact, plain):
            u.load_actor(algo.actor_state_dict(i), 1)
        assert np.array_equal(exact.bid(obs[:, i], "eval", 0.0), want[:, i])
        np.testing.assert_allclose(plain.bid(obs[:, i], "eval", 0.0), want[:, i], atol=1e-6)


# --------------------------------------------------------------------------- documented API


def test_config_dict_and_checks():
    role = Learning(CFG, START, END)
    assert isinstance(role.learning_config, LearningConfig) and role.learning_config.train_freq == 6
    assert role.first_update == START + dt.timedelta(hours=6)
    with pytest.raises(ValueError, match="naive"):
        Learning(CFG, dt.datetime(2023, 1, 1), END)
    with pytest.raises(ValueError, match="after start"):
        Learning(CFG, END, START)
    with pytest.raises(TypeError):
        Learning(42, START, END)
    with pytest.raises(RuntimeError, match="register_units"):
        role.create_learning_algorithm("matd3")
    role.register_units(AGENTS, OBS, ACTS)
    with pytest.raises(ValueError, match="unknown algorithm 'ppo'"):
        role.create_learning_algorithm("ppo")
    assert role.rl_algorithm is None
    role.create_learning_algorithm("MATD3")
    assert role.rl_algorithm.n_agents == 2 and role.buffer.n_rl_units == 2
    with pytest.raises(RuntimeError):
        role.register_units(AGENTS, OBS, ACTS)


def test_extract_and_create_actors_and_critics():
    a, b = make_role(seed=1), make_role(seed=2)
    nets = a.extract_actors_and_critics()
    assert isinstance(nets["actors"]["plant_a"], Actor) and isinstance(nets["critics"]["storage_b"], CriticTD3)
    x = torch.randn(4, OBS)
    with torch.no_grad():
        assert torch.allclose(nets["actors"]["plant_a"](x), a.rl_algorithm.act(torch.stack([x, x], 1))[:, 0], atol=1e-6)
    b.create_actors_and_critics(nets)
    for pa, pb in zip(a.rl_algorithm.state_dict()["actor"] + a.rl_algorithm.state_dict()["critic_target"],
                      b.rl_algorithm.state_dict()["actor"] + b.rl_algorithm.state_dict()["critic_target"]):
        assert torch.equal(pa, pb)
    c = make_role(seed=3)
    before = c.rl_algorithm.state_dict()["actor"]
    broken = {"actors": {"plant_a": nets["actors"]["plant_a"].state_dict(), "storage_b": {"net.0.weight": torch.zeros(1)}}}
    with pytest.raises(KeyError):
        c.create_actors_and_critics(broken)
    assert all(torch.equal(p, q) for p, q in zip(before, c.rl_algorithm.state_dict()["actor"]))  # nothing written
    with pytest.raises(KeyError, match="unknown units"):
        c.create_actors_and_critics({"actors": {"nobody": nets["actors"]["plant_a"]}})


def test_save_load_and_compare(tmp_path):
    a, b = make_role(seed=1, save_path=tmp_path / "policies"), make_role(seed=2)
    a.save_params(tmp_path / "ck")
    assert (tmp_path / "ck" / "actors" / "actor_plant_a.pt").is_file() and (tmp_path / "ck" / "manifest.json").is_file()
    sd_a = a.rl_algorithm.state_dict()
    b.load_actor_params(tmp_path / "ck")
    sd_b = b.rl_algorithm.state_dict()
    assert all(torch.equal(p, q) for p, q in zip(sd_a["actor"], sd_b["actor"]))
    assert not all(torch.equal(p, q) for p, q in zip(sd_a["critic"], sd_b["critic"]))
    b.load_critic_params(tmp_path / "ck")
    assert all(torch.equal(p, q) for p, q in zip(sd_a["critic"], b.rl_algorithm.state_dict()["critic"]))
    c = make_role(seed=3)
    c.load_params(tmp_path / "ck")
    assert all(torch.equal(p, q) for p, q in zip(sd_a["critic_target"], c.rl_algorithm.state_dict()["critic_target"]))
    obj = a.load_obj(tmp_path / "ck" / "actors" / "actor_storage_b.pt")
    assert set(obj) == {"actor", "actor_target", "actor_optimizer"}
    with pytest.raises(CheckpointError):
        c.load_params(tmp_path / "nothing")

    assert a.compare_and_save_policies({"reward": 1.0, "profit": 5.0, "regret": 2.0}) == ["best", "best_profit", "best_regret"]
    assert a.compare_and_save_policies({"reward": 0.5, "profit": 6.0, "regret": 1.0}) == ["best_profit", "best_regret"]
    assert a.compare_and_save_policies({"reward": 2.0, "profit": 0.0, "regret": 3.0}) == ["best"]
    assert a.best == {"reward": 2.0, "profit": 6.0, "regret": 1.0}
    assert {p.name for p in (tmp_path / "policies").iterdir()} == {"best", "best_profit", "best_regret"}
    with pytest.raises(KeyError, match="regret"):
        a.compare_and_save_policies({"reward": 1.0, "profit": 1.0})


async def test_market_drops_bad_bids_and_clears_the_episode():
    from envs import load_scenario
    from agents.mango.agents import MarketAgent

    sc = load_scenario("tiny")
    clock = ExternalClock(start_time=START.timestamp() - 3600)
    c = create_ec_container(codec=make_codec(), clock=clock, addr="world")
    market = c.register(MarketAgent(sc, num_envs=1, seed=0, env_options={"max_cycles": 6}, analysis=False), "market")
    learner = c.register(Peer(), "learner")
    spec = UnitSpec("plant_learner-1", 0, 1, market.core.obs_dim, 2, 2, 1, [8], [8], 0.1, 0)
    unit = c.register(UnitAgent(spec), "plant_learner-1")
    intruder = c.register(Peer(), "intruder")
    market.connect({"plant_learner-1": unit.addr}, learner.addr)
    bid = {"context": MARKET, "type": "bid", "unit": "plant_learner-1", "episode": 0, "hour": 0, "version": 0,
           "action": np.zeros((1, 2))}
    bad = ["junk", {"context": MARKET}, dict(bid, unit="nobody"), bid,  # no hour open: stale
           dict(bid, hour=5), dict(bid, action=np.full((1, 2), 2.0)), dict(bid, action=np.zeros((1, 3)))]
    async with activate(c):
        for content in bad:
            await intruder.send_message(content, market.addr)
        await settle(c)
        market.begin_episode(0, "train", START, noise_scale=1.0, learning_rate=1e-3)
        await settle(c)
        while (nxt := clock.get_next_activity()) is not None:
            clock.set_time(nxt)
            await settle(c)
    assert market.dropped_messages == len(bad) and market.failure is None
    out = market.outcomes[0]
    assert (out.episode, out.mode, out.hours) == (0, "train", 6)
    kinds = [m["type"] for m in learner.received]
    assert kinds == ["episode_start"] + ["transition"] * 6 + ["episode_end"]
    assert unit.bids == 6
