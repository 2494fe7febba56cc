"""Learning-quality keys of issue 9 (best_policy_metric ...), on the built-in tiny scenario."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.checkpoint import read_manifest
from agents.config import ConfigError, LearningConfig
from agents.evaluation import EvalResult
from agents.recorder import best_metric, compare_policies, initial_best
from agents.trainer import Trainer
from envs import load_scenario

SMALL = [
    "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "train_freq=12h", "gradient_steps=2", "batch_size=16",
    "episodes_collecting_initial_experience=1", "validation_episodes_interval=1", "training_episodes=4",
    "replay_buffer_size=10000", "torch_threads=1", "profile_search=0",
]


def make(tmp_path, extra=(), seed=3):
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + list(extra))
    return Trainer(sc, cfg, run_dir=tmp_path, seed=seed, progress=False, tensorboard=False)


def fake_eval(n: int, reward: float, share: float | None) -> EvalResult:
    """An evaluation whose learners earn ``share`` of their best-response profit (1 EUR)
    each (``None``: no analysis)."""
    z = np.zeros(n)
    ev = EvalResult(reward=reward, profit=1000.0 * reward, regret=-reward, mean_price=50.0,
                    agent_profit=np.full(n, share if share is not None else 0.0), agent_reward=z, markup=0.0, dispatch=z)
    if share is not None:  # exploitability as envs.analysis defines it: sum of gains / sum of |profits|
        ev.br_profit, ev.br_share = np.ones(n), np.full(n, share)
        ev.exploitability = (1.0 - share) / max(abs(share), 1e-9)
    return ev


# evaluation after episodes 0, 1, 2: the highest reward comes second, the highest share third
EVALS = [(1.0, 0.5), (2.0, 0.2), (0.5, 0.8)]


@pytest.mark.parametrize("setting, want, key", [("reward", 1, None), ("br_share", 2, "br_share"),
                                               ("gain", 2, "gain"), ("auto", 2, "gain")])
def test_best_policy_metric_decides_what_policies_best_holds(tmp_path, setting, want, key):
    """best_policy_metric: `policies/best` holds the evaluation with the highest reward
    ("reward"), the highest share of the best-response profit ("br_share") or the lowest
    total gain from deviating ("gain", "auto"; with the analysis);
    best_profit / best_regret and the best reward (early stopping) do not depend on it; a
    resumed run's books keep the choice."""
    tr = make(tmp_path, [f"best_policy_metric={setting}"])
    rec = tr.recorder
    saved = []
    for ep, (reward, share) in enumerate(EVALS):
        row, _ = rec.record_episode(ep, {"reward": 0.0}, fake_eval(tr.n, reward, share), 0.0)
        saved.append(row["saved"])
    best = read_manifest(tmp_path / "policies" / "best")
    assert best["episode"] == want and best["metrics"]["reward"] == EVALS[want][0]
    assert read_manifest(tmp_path / "policies" / "best_profit")["episode"] == 1  # profit = 1000 x reward
    assert read_manifest(tmp_path / "policies" / "best_regret")["episode"] == 1  # regret = -reward
    assert rec.best["reward"] == 2.0
    if setting == "reward":
        assert saved == ["best+best_profit+best_regret"] * 2 + [""] and "br_share" not in rec.best
        assert "gain" not in rec.best
    else:
        assert saved == ["best+best_profit+best_regret", "best_profit+best_regret", "best"]
        assert rec.best[key] == pytest.approx(0.8 if key == "br_share" else tr.n * 0.2)
    # resume: the books round-trip and guard_best raises a fresh recorder to the saved best
    state = rec.state_dict()
    tr2 = make(tmp_path, [f"best_policy_metric={setting}"])
    tr2.recorder.load_state_dict(state)
    assert tr2.recorder.best == rec.best
    tr3 = make(tmp_path, [f"best_policy_metric={setting}"])
    tr3.recorder.guard_best()
    if setting != "reward":
        assert tr3.recorder.best[key] == pytest.approx(rec.best[key])
        # a later, worse evaluation does not replace policies/best
        tr3.recorder.record_episode(3, {"reward": 0.0}, fake_eval(tr.n, 9.0, 0.7), 0.0)
        assert read_manifest(tmp_path / "policies" / "best")["episode"] == 2


def test_best_policy_metric_without_the_analysis_falls_back_to_reward(tmp_path, capsys):
    """Evaluations without the analysis choose `best` by reward: silently with "auto",
    with one note with "br_share"; an unknown value is refused on construction."""
    assert best_metric("auto", {"reward": 1.0}) == "reward"
    assert best_metric("auto", {"reward": 1.0, "br_share": 0.3, "gain": 5.0}) == "gain"
    assert best_metric("br_share", {"reward": 1.0, "br_share": 0.3, "gain": 5.0}) == "br_share"
    assert best_metric("reward", {"reward": 1.0, "br_share": 0.3, "gain": 5.0}) == "reward"
    for setting, noted in (("auto", False), ("br_share", True), ("gain", True)):
        tr = make(tmp_path / setting, [f"best_policy_metric={setting}"])
        for ep, (reward, _) in enumerate(EVALS):
            tr.recorder.record_episode(ep, {"reward": 0.0}, fake_eval(tr.n, reward, None), 0.0)
        assert read_manifest(tmp_path / setting / "policies" / "best")["episode"] == 1
        assert capsys.readouterr().out.count(f"best_policy_metric is {setting}") == int(noted)
    # NaN share (no best-response profit at all) never becomes the best
    best = initial_best()
    assert compare_policies(best, {"reward": 1.0, "profit": 1.0, "regret": 0.0, "br_share": math.nan},
                            best_by="br_share") == ["best_profit", "best_regret"]
    # why not the exploitability: a policy that loses 1.5x its best-response profit has a
    # lower exploitability (2.5 / 1.5) than one that earns 0.3 of it (0.7 / 0.3); br_share keeps the latter
    losing, earning = fake_eval(1, 1.0, -1.5).metrics(), fake_eval(1, 0.5, 0.3).metrics()
    assert losing["exploitability"] < earning["exploitability"]
    best = initial_best()
    compare_policies(best, earning, best_by="br_share")
    assert "best" not in compare_policies(best, losing, best_by="br_share") and best["br_share"] == 0.3
    # an undefined share chooses by reward until a defined one has been seen
    nan = {"reward": 2.0, "br_share": math.nan}
    assert best_metric("br_share", nan) == "reward" and best_metric("br_share", nan, initial_best()) == "reward"
    assert best_metric("br_share", nan, {"br_share": 0.4}) == "br_share"
    with pytest.raises(ConfigError, match="best_policy_metric"):
        LearningConfig.from_dict({"best_policy_metric": "profit"})


def test_gain_keeps_the_profile_nearest_to_equilibrium_where_shares_are_undefined(tmp_path):
    """A competitive market: every learner's best response earns (almost) nothing, so the
    share is undefined or explodes. "gain" (and "auto") keep the evaluation the learners
    could gain least from by deviating, in EUR."""
    tr = make(tmp_path, ["best_policy_metric=auto"])
    z = np.zeros(tr.n)
    evals = []
    for profit, br in ((-900.0, 100.0), (-50.0, 20.0), (30.0, 500.0)):  # gains 1000, 70, 470
        ev = EvalResult(reward=profit / 1e3, profit=profit, regret=0.0, mean_price=50.0, agent_profit=np.full(tr.n, profit),
                        agent_reward=z, markup=0.0, dispatch=z, br_profit=np.full(tr.n, br),
                        br_share=np.full(tr.n, profit / br), exploitability=(br - profit) / abs(profit))
        evals.append(ev)
    assert [round(e.metrics()["gain"]) for e in evals] == [1000 * tr.n, 70 * tr.n, 470 * tr.n]
    for ep, ev in enumerate(evals):
        tr.recorder.record_episode(ep, {"reward": 0.0}, ev, 0.0)
    assert read_manifest(tmp_path / "policies" / "best")["episode"] == 1  # br_share would keep episode 2
    assert compare_policies(initial_best(), {**evals[0].metrics(), "gain": math.nan}, best_by="gain") == [
        "best_profit", "best_regret"]


def test_the_fitted_actors_compete_for_policies_best(tmp_path):
    """With the equilibrium teacher, the actors right after its fit are evaluated before
    the first training episode and kept in `policies/best` unless an evaluation during
    training is nearer to equilibrium (here no training evaluation runs: all episodes
    are initial exploration)."""
    tr = make(tmp_path, ["equilibrium_teacher_steps=200", "training_episodes=1", "episodes_collecting_initial_experience=2"])
    tr.train()
    assert tr.learner.equilibrium_fitted and tr.fit_evaluation is not None
    assert not any("eval/gain" in r for r in tr.history)
    best = read_manifest(tmp_path / "policies" / "best")
    assert best["episode"] == 0 and best["metrics"]["gain"] == pytest.approx(tr.fit_evaluation["gain"])
    assert best["metrics"]["before_training"] == 1.0
    summary = tr.finish(tr.train(), plots=False)  # no more episodes: the summary scores the fitted actors
    assert "right after the equilibrium teacher's fit" in summary["evaluated_policy"]
    # it is what re-evaluating policies/best scores (the evaluation is deterministic)
    tr.learner.load(tmp_path / "policies" / "best")
    assert tr.evaluate(analysis=True).metrics()["gain"] == pytest.approx(tr.fit_evaluation["gain"], rel=1e-9, abs=1e-6)
    tr.close()
    # without the teacher nothing is evaluated before training
    tr2 = make(tmp_path / "off", ["equilibrium_teacher=false", "training_episodes=1",
                                  "episodes_collecting_initial_experience=2"])
    tr2.train()
    assert tr2.fit_evaluation is None and not (tmp_path / "off" / "policies" / "best").exists()
    tr2.close()


def test_undefined_shares_still_keep_a_best_policy(tmp_path, capsys):
    tr = make(tmp_path / "nan", ["best_policy_metric=br_share"])
    evs = [fake_eval(tr.n, 1.0, 0.5), fake_eval(tr.n, 3.0, 0.5)]
    for ev in evs:
        ev.br_profit = np.zeros_like(ev.br_profit)  # no learner could earn anything: share NaN
    for ep, ev in enumerate(evs):
        assert math.isnan(ev.metrics()["br_share"])
        tr.recorder.record_episode(ep, {"reward": 0.0}, ev, 0.0)
    assert read_manifest(tmp_path / "nan" / "policies" / "best")["episode"] == 1  # the higher reward
    assert "ran no best-response analysis" not in capsys.readouterr().out


def test_best_policy_metric_auto_keeps_the_evaluation_nearest_to_the_best_responses_of_a_real_run(tmp_path):
    """A real run with the analysis: `policies/best` is the evaluation with the lowest
    total gain from deviating among those in history.csv and the one right after the
    equilibrium teacher's fit (tiny's config turns it on), and re-evaluating it (what
    train.py's final summary does) scores that gain again."""
    tr = make(tmp_path, ["best_policy_metric=auto", "training_episodes=5"])
    res = tr.train()
    evals = [(r["episode"], r["eval/gain"]) for r in res.history if "eval/gain" in r]
    assert len(evals) == 4 and tr.fit_evaluation is not None
    ep, lowest = min([(-1, tr.fit_evaluation["gain"])] + evals, key=lambda e: e[1])
    best = read_manifest(tmp_path / "policies" / "best")
    assert best["metrics"]["gain"] == lowest == res.best["gain"]
    assert best["episode"] == max(ep, 0) and bool(best["metrics"].get("before_training")) == (ep == -1)
    tr.learner.load(tmp_path / "policies" / "best")
    assert tr.evaluate(analysis=True).metrics()["gain"] == pytest.approx(lowest, rel=1e-9, abs=1e-6)


def test_critic_reward_scale_multiplies_what_the_critics_learn_from_only(tmp_path):
    """critic_reward_scale: the replay buffer holds the env's rewards times the scale
    ("auto" = 1 - gamma); the reported episode reward and profit are unchanged."""
    runs = {}
    for setting in ("1.0", "0.25", "auto"):
        tr = make(None, [f"critic_reward_scale={setting}", "gamma=0.8", "training_episodes=1"])
        stats = tr.run_episode()  # initial exploration: the same random actions in every run
        b = tr.buffer
        runs[setting] = (np.array(b.rewards, copy=True), stats["reward"], stats["profit"])
    base = runs["1.0"][0]
    assert np.abs(base).max() > 0
    np.testing.assert_allclose(runs["0.25"][0], 0.25 * base, rtol=1e-6)
    np.testing.assert_allclose(runs["auto"][0], 0.2 * base, rtol=1e-6)
    assert runs["0.25"][1:] == runs["auto"][1:] == runs["1.0"][1:]
    assert LearningConfig.from_dict({"critic_reward_scale": "auto", "gamma": 1.0}).resolved_critic_reward_scale() == 1.0
    with pytest.raises(ConfigError, match="critic_reward_scale"):
        LearningConfig.from_dict({"critic_reward_scale": -1})


def test_best_policy_interval_adds_evaluations_that_only_choose_the_best_policy(tmp_path):
    """best_policy_interval: evaluations after every k-th episode besides the validation
    ones (logged, and able to become policies/best); "auto" = every episode for at most 5
    learning units, none above; they do not count for early stopping."""
    from agents.recorder import BEST_POLICY_AUTO_AGENTS, best_policy_interval, evaluation_due

    tr = make(tmp_path, ["training_episodes=7", "validation_episodes_interval=3", "best_policy_interval=2"])
    tr.train()
    # exploration: episode 0; validations after 3, 6 (and the last, 6); extra ones after 2, 4, 6
    assert [r["episode"] for r in tr.history if "eval/reward" in r] == [2, 3, 4, 6]
    best = read_manifest(tmp_path / "policies" / "best")
    # an evaluated episode, or the equilibrium teacher's fitted actors before training
    # (recorded as episode 0 with before_training)
    assert best["episode"] in (2, 3, 4, 6) or (best["episode"] == 0 and best["metrics"].get("before_training"))
    cfg = LearningConfig.from_dict({"best_policy_interval": "auto", "validation_episodes_interval": 5,
                                    "episodes_collecting_initial_experience": 0})
    assert best_policy_interval(cfg, BEST_POLICY_AUTO_AGENTS) == 1
    assert best_policy_interval(cfg, BEST_POLICY_AUTO_AGENTS + 1) is None
    assert [e for e in range(10) if evaluation_due(cfg, e, 10, 3)] == list(range(10))
    assert [e for e in range(10) if evaluation_due(cfg, e, 10, 24)] == [4, 9]
    assert [e for e in range(10) if evaluation_due(cfg.with_overrides({"best_policy_interval": None}), e, 10, 3)] == [4, 9]
    # early stopping counts only the validations: with 1 step and a huge threshold the run stops
    # at the second validation (after episode 6: 1 exploration episode, then every 3rd), whatever the
    # extra evaluations after every episode saw
    tr = make(None, ["training_episodes=12", "validation_episodes_interval=3", "best_policy_interval=1",
                     "early_stopping_steps=1", "early_stopping_threshold=1000"])
    res = tr.train()
    assert res.stopped_early and res.episodes == 7
    assert [r["episode"] for r in tr.history if "eval/reward" in r] == [1, 2, 3, 4, 5, 6]


def test_best_response_teacher_auto_teaches_a_single_learning_unit_or_two_sided_storage():
    """best_response_teacher "auto" (the default): weight 100 with one learning unit (the
    plain loop then refreshes the teacher and the actor steps imitate); with several, 100
    for the storage units that bid two-sided and, where the env reads plant offers on its
    grid (plant_bids "undercut"), for the plants; free plants get weight 0 and NaN
    targets; none when nothing qualifies."""
    from agents.learner import TEACHER_AUTO_WEIGHT

    # the equilibrium teacher ("auto": on for one plant without start-ups) would replace
    # the refreshed best-response targets; off here to see the refreshes themselves
    tr = make(None, ["training_episodes=3", "equilibrium_teacher=false"])
    assert tr.config.best_response_teacher == "auto" and tr.n == 1
    assert tr.learner.teacher_weight == TEACHER_AUTO_WEIGHT == 100.0
    tr.train()
    assert tr.learner.teacher_data and "losses/imitation_loss" in tr.history[-1]
    assert make(None, ["best_response_teacher=0"]).learner.teacher_weight == 0.0
    assert make(None, ["best_response_teacher=7"]).learner.teacher_weight == 7.0
    sc = load_scenario("default")  # three learning units: two plants with start-up costs, a storage

    def trainer(*over):
        cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=3", *over])
        return Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})

    signed = trainer("storage_bids=signed", "plant_bids=free")
    assert signed.n == 3 and signed.learner.teacher_weight == 0.0 and not signed.learner.teacher_due(2)
    for plants, taught in (("free", {"storage"}), ("undercut", {"storage", "plant"})):
        two = trainer(f"plant_bids={plants}")
        assert two.core.plant_bids == plants
        kinds = np.array(two.core.agent_kind)
        mask = np.isin(kinds, list(taught))
        np.testing.assert_array_equal(two.learner.teach_mask, mask)
        assert two.learner.teacher_weight == 100.0
        two.train()
        obs, tgt = two.learner.teacher_data[-1]
        assert np.isnan(tgt[:, ~mask]).all() and np.isfinite(tgt[:, mask, :2]).all()
        if two.learner.algo.n_updates % 2 == 0:
            two.learner.algo.n_updates += 1  # the next step is an actor step
        _, _, w = two.learner._teacher_batch()
        np.testing.assert_array_equal(np.broadcast_to(w, mask.shape), np.where(mask, 100.0, 0.0))
    assert trainer().core.plant_bids == "undercut"  # "auto" for default: the grid, so plants are taught


def test_teacher_and_critic_search_share_one_imitation_term():
    """A teacher for some units and critic_search for the others: one imitation batch
    with the teacher's rows (targets only for the taught units) and the search's rows
    (targets only for the others), each unit weighted by its own key."""
    sc = load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        SMALL + ["training_episodes=3", "critic_search=2", "plant_cost_floor=0",
                 "plant_bids=free"])  # free: "auto" leaves the plants to the search (the grid would teach them)
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    tr.train()
    kinds = np.array(tr.core.agent_kind)
    if tr.learner.algo.n_updates % 2 == 0:
        tr.learner.algo.n_updates += 1
    batch = tr.learner.buffer.sample(tr.config.batch_size)
    t_obs, _, _ = tr.learner._teacher_batch()
    obs, tgt, w = tr.learner._imitation_batch(batch)
    nt = len(t_obs)
    assert obs.shape[0] == nt + min(tr.config.batch_size, 64)
    np.testing.assert_array_equal(w, np.where(kinds == "storage", 100.0, 2.0))
    tgt = tgt.numpy()
    assert np.isnan(tgt[:nt, kinds != "storage"]).all() and np.isfinite(tgt[:nt, kinds == "storage"]).all()
    assert np.isnan(tgt[nt:, kinds == "storage"]).all()
    tr.learner.algo.update(batch, imitation=(obs, tgt, w))  # accepted by the actor step


def test_resume_state_keeps_the_best_response_teacher(tmp_path):
    """The learner's resume state holds the teacher's refreshes and sampling generator,
    so a resumed run teaches from the same data as an uninterrupted one."""
    import torch

    tr = make(None, ["training_episodes=4", "best_response_teacher=100", "equilibrium_teacher=false"])
    tr.train(3)
    assert tr.learner.teacher_data
    path = tmp_path / "state.pt"
    torch.save(tr.learner.state_dict(), path)
    sd = torch.load(path, weights_only=True)
    fresh = make(None, ["training_episodes=4", "best_response_teacher=100", "equilibrium_teacher=false"])
    fresh.learner.load_state_dict(sd)
    fresh.learner.load_buffer_state_dict(tr.learner.buffer_state_dict())
    assert len(fresh.learner.teacher_data) == len(tr.learner.teacher_data)
    for (o1, t1), (o2, t2) in zip(fresh.learner.teacher_data, tr.learner.teacher_data):
        assert np.array_equal(o1, o2) and np.array_equal(t1, t2, equal_nan=True)
    assert fresh.learner.teacher_rng.integers(1 << 30) == tr.learner.teacher_rng.integers(1 << 30)
    for t in (tr, fresh):
        t.train(4)
    for a, b in zip(tr.algo.actor_params, fresh.algo.actor_params):
        assert torch.equal(a, b)


def test_critic_search_teaches_the_critics_best_candidate_where_it_beats_the_actor():
    """critic_search: on an actor step, each learner's target is the best of its current
    action and CRITIC_SEARCH_CANDIDATES random ones by min(Q1, Q2) of its own critic
    (the others' sampled actions kept), only where that beats the current action by the
    margin; no targets on critic-only steps or with weight 0; the generator is part of
    the resume state; a short run with it trains (imitation loss logged)."""
    import torch

    from agents import learner as learner_mod

    sc = load_scenario("default")  # 3 learners: plants and a storage unit
    base = ["actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "train_freq=24h", "gradient_steps=4",
            "batch_size=32", "episodes_collecting_initial_experience=1", "validation_episodes_interval=10",
            "training_episodes=2", "torch_threads=1", "best_policy_interval=null"]
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(base + ["critic_search=2.5"])
    tr = Trainer(sc, cfg, run_dir=None, seed=2, progress=False, tensorboard=False, env_options={"max_cycles": 72})
    tr.train()
    le = tr.learner
    assert "losses/imitation_loss" in tr.history[-1]
    batch = le.buffer.sample(32)
    le.algo.n_updates += le.algo.n_updates % 2  # even: the next step is a critic-only step (policy_delay 2)
    assert le._search_batch(batch) is None
    le.algo.n_updates += 1  # the next one is an actor step
    state = le.search_rng.bit_generator.state
    obs, tgt, w = le._search_batch(batch)
    assert w == 2.5 and tgt.shape == batch.actions.shape
    # recompute: the same candidates from the same generator state
    le.search_rng.bit_generator.state = state
    K, (B, n, m) = learner_mod.CRITIC_SEARCH_CANDIDATES, batch.actions.shape
    pi = le.algo.act(batch.observations) * le.algo.action_mask
    rand = torch.from_numpy(le.search_rng.uniform(-1.0, 1.0, size=(K, B, n, m))).float()
    cand = torch.cat([pi.unsqueeze(0), rand])
    q = le.algo.own_action_values(batch.observations, batch.actions, cand)
    best = q.argmax(0)
    margin = learner_mod.CRITIC_SEARCH_MARGIN * q[0].abs().mean(0)
    taught = q.max(0).values - q[0] > margin
    assert taught.any() and (~taught).any()  # an untrained critic: some states gain, some do not
    for b in range(B):
        for i in range(n):
            if taught[b, i]:
                torch.testing.assert_close(tgt[b, i], cand[best[b, i], b, i])
                assert best[b, i] > 0  # never the actor's own action
            else:
                assert torch.isnan(tgt[b, i]).all()
    assert le.state_dict()["generators"]["search"] == le.search_rng.bit_generator.state
    # a bigger batch: only its first CRITIC_SEARCH_STATES states are searched
    big = le.buffer.sample(learner_mod.CRITIC_SEARCH_STATES + 36)
    o, t, _ = le._search_batch(big)
    assert t.shape[0] == learner_mod.CRITIC_SEARCH_STATES
    assert torch.equal(torch.as_tensor(o), torch.as_tensor(big.observations[:learner_mod.CRITIC_SEARCH_STATES]))
    off = Trainer(sc, LearningConfig.from_dict(sc.learning_config).with_overrides(base), run_dir=None, seed=2,
                  progress=False, tensorboard=False, env_options={"max_cycles": 72})
    off.learner.algo.n_updates = 1
    assert off.learner._search_batch(batch) is None


def test_critic_search_auto_applies_to_the_units_with_discount_zero_only():
    """critic_search "auto": weight CRITIC_SEARCH_AUTO_WEIGHT for the units that
    per_unit_gamma gives discount 0 (no start-up cost, not storage), no target for the
    others; off when per_unit_gamma is off or gives no unit discount 0; a number applies
    to every unit."""
    from types import SimpleNamespace

    import torch

    from agents import learner as learner_mod

    sc = load_scenario("default")  # 3 learners; their roles are set below by a stand-in core
    base = ["actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "train_freq=24h", "gradient_steps=4",
            "batch_size=32", "episodes_collecting_initial_experience=1", "validation_episodes_interval=10",
            "training_episodes=1", "torch_threads=1", "best_policy_interval=null"]
    tr = Trainer(sc, LearningConfig.from_dict(sc.learning_config).with_overrides(base), run_dir=None, seed=4,
                 progress=False, tensorboard=False, env_options={"max_cycles": 72})
    le = tr.learner
    assert le.config.critic_search == "auto" and le.search_weight == 0.0  # default: all three units are coupled
    tr.train()
    mixed = SimpleNamespace(n=3, agent_kind=["plant", "plant", "storage"],
                            agent_start_up_cost=np.array([0.0, 5.0, 0.0]))
    le.apply_unit_roles(mixed)
    assert le.search_weight == learner_mod.CRITIC_SEARCH_AUTO_WEIGHT
    assert le.search_mask.tolist() == [True, False, False]
    assert le.algo.agent_gamma.view(-1).tolist() == pytest.approx(
        [0.0, le.config.resolved_start_up_gamma(), le.config.gamma])
    batch = le.buffer.sample(32)
    le.algo.n_updates += 1 - le.algo.n_updates % 2  # odd: the next step is an actor step
    state = le.search_rng.bit_generator.state
    obs, tgt, w = le._search_batch(batch)
    assert w.tolist() == [1.0, 0.0, 0.0] and torch.isnan(tgt[:, 1:]).all() and not torch.isnan(tgt[:, 0]).all()
    # the same draw for every unit: unit 0's targets are the same, the others get some
    le.search_rng.bit_generator.state = state
    le.search_mask = None
    _, every, _ = le._search_batch(batch)
    torch.testing.assert_close(every[:, 0], tgt[:, 0], equal_nan=True)
    assert not torch.isnan(every[:, 1:]).all()
    # per_unit_gamma off: no unit has discount 0, so "auto" is off
    le.config = le.config.with_overrides({"per_unit_gamma": False})
    le.apply_unit_roles(mixed)
    assert le.search_weight == 0.0 and le._search_batch(batch) is None
    # a number: every unit
    le.config = le.config.with_overrides({"critic_search": 2.0})
    le.apply_unit_roles(mixed)
    assert le.search_weight == 2.0 and le.search_mask is None
    tr.close()


def test_per_unit_gamma_discounts_only_units_with_a_link_between_hours():
    """per_unit_gamma: discount 0 for plants without start-up costs and renewables, the
    config's gamma for storage, start_up_gamma for plants with start-up costs; off (and "auto" with one
    learning unit): gamma for all. On
    `tiny` (one plant without start-up costs) a run with it is bit for bit the run with
    gamma 0, and not the run with the config's gamma."""
    import torch

    d = load_scenario("default")  # two CCGTs with start-up costs (start_up_gamma), one storage (gamma)
    cfg = LearningConfig.from_dict(d.learning_config).with_overrides(["per_unit_gamma=true", "gamma=0.9",
                                                                      "start_up_gamma=0.9", "torch_threads=1"])
    tr = Trainer(d, cfg, run_dir=None, seed=0, progress=False, tensorboard=False)
    assert tr.learner.algo.agent_gamma.view(-1).tolist() == pytest.approx([0.9, 0.9, 0.9])
    tr = Trainer(d, cfg.with_overrides(["start_up_gamma=auto"]), run_dir=None, seed=0, progress=False,
                 tensorboard=False)
    assert tr.learner.algo.agent_gamma.view(-1).tolist() == pytest.approx([0.97, 0.97, 0.9])
    m = load_scenario("many")  # 24 plants without start-up costs
    cfg = LearningConfig.from_dict(m.learning_config).with_overrides(["per_unit_gamma=true", "torch_threads=1"])
    tr = Trainer(m, cfg, run_dir=None, seed=0, progress=False, tensorboard=False)
    assert tr.learner.algo.agent_gamma.view(-1).tolist() == [0.0] * 24
    cfg = LearningConfig.from_dict(m.learning_config).with_overrides(["torch_threads=1"])  # "auto", 24 learners: on
    tr = Trainer(m, cfg, run_dir=None, seed=0, progress=False, tensorboard=False)
    assert tr.learner.algo.agent_gamma.view(-1).tolist() == [0.0] * 24
    cfg = cfg.with_overrides(["per_unit_gamma=false"])
    assert Trainer(m, cfg, run_dir=None, seed=0, progress=False, tensorboard=False).learner.algo.agent_gamma is None
    assert make(None, ["gamma=0.9"]).learner.algo.agent_gamma is None  # "auto" with one learning unit: off

    def critics(extra):
        tr = make(None, ["best_response_teacher=0", "critic_search=0"] + extra)
        tr.train()
        return tr.learner.algo.critic_params

    on = critics(["per_unit_gamma=true", "gamma=0.9"])
    assert all(torch.equal(a, b) for a, b in zip(on, critics(["gamma=0"])))
    assert not all(torch.equal(a, b) for a, b in zip(on, critics(["gamma=0.9"])))


def test_equilibrium_teacher_fits_the_actors_to_the_equilibrium_bids(capsys):
    """equilibrium_teacher "auto" on `many` (24 plants without start-up costs, 24 hours):
    before the first episode the equilibrium reference of the training hours is computed,
    its rows (targets: each unit's equilibrium bids, ties at marginal cost) join the
    teacher, every unit is taught, and the fit moves the actors onto them: the evaluation
    after it is much nearer an equilibrium than the untrained actors. The best-response
    refreshes are skipped (every unit is taught by the equilibrium); off for `default`
    (start-ups, storage), with best_response_teacher 0, equilibrium_teacher false or more
    learners than analysis_max_agents;
    equilibrium_teacher_steps 0 sets the rows without fitting; equilibrium_teacher_rollouts
    adds the states the fitted actors visit, labelled with their hour's targets."""
    from envs.analysis import best_response, exploitability
    from envs.equilibrium import equilibrium

    sc = load_scenario("many")
    over = SMALL + ["equilibrium_teacher_steps=600", "best_policy_interval=null"]
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(over)
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    le = tr.learner
    assert le.equilibrium_teacher_wanted(tr.core) and le.equilibrium_rows is None
    before = tr.evaluate()
    tr.prepare_equilibrium_teacher()
    assert tr.equilibrium_teacher_report.startswith("equilibrium teacher: equilibrium found")
    obs, tgt = le.equilibrium_rows
    assert obs.shape == (24, tr.n, tr.core.obs_dim) and tgt.shape == (24, tr.n, tr.core.max_act)
    assert le.equilibrium_mask.all() and le.teach_mask.all() and le.teacher_weight == 100.0
    # the targets: the equilibrium's bids with cost ties (offers above cost 0.3 EUR lower)
    eq = equilibrium(sc, hours=24, max_bid_price=tr.core.max_bid_price)
    mbp = tr.core.max_bid_price
    for k in (0, 11, 23):
        p = best_response(eq.record, k, ties="cost").best_price
        mc = sc.plants.marginal_cost[:24, tr.core.lp[k]][:, None]
        want = np.where(p > mc, np.maximum(p - 0.3, mc), p) / mbp
        np.testing.assert_allclose(tgt[:, k, :2], np.clip(want, -1, 1), atol=1e-6)
    # the first observation is the env's own at hour 0
    np.testing.assert_allclose(obs[0], tr.eval_core.reset(np.random.default_rng(0))[0], atol=1e-6)
    # equilibrium_teacher_rollouts (3): each round adds the states of four rollouts of the
    # fitted actors (copy 0 bare, three with action noise), labelled with their hour's targets
    rr = le.equilibrium_rollout_rows
    assert len(rr) == 3 and "3 rounds of rollouts (4 copies)" in tr.equilibrium_teacher_report
    for r_obs, r_tgt in rr:
        assert r_obs.shape == (4 * 24, tr.n, tr.core.obs_dim)
        for c in range(4):
            np.testing.assert_array_equal(r_tgt[c * 24:(c + 1) * 24], tgt)
        np.testing.assert_allclose(r_obs[0], obs[0], atol=1e-6)  # every rollout starts at hour 0
        assert not np.allclose(r_obs[24:48], r_obs[:24])  # the noisy copy visits other states
    # fitted: the actors' actions on the equilibrium path are near the targets
    err = np.abs(le.act(obs, explore=False)[:, :, :2] - tgt[:, :, :2]).mean()
    assert err < 0.01
    r_obs = np.concatenate([o for o, _ in rr])  # ... and on the states of the rollouts
    assert np.abs(le.act(r_obs, explore=False)[:, :, :2] - np.tile(tgt, (12, 1, 1))[:, :, :2]).mean() < 0.01
    # the rollout rows are in the run state: a resume (no fit, no new rollouts) keeps them
    twin = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    twin.learner.load_state_dict(le.state_dict())
    twin.learner.set_equilibrium_teacher(twin.core, sc, fit=False)
    assert len(twin.learner.equilibrium_rollout_rows) == 3
    for (o1, t1), (o2, t2) in zip(rr, twin.learner.equilibrium_rollout_rows):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(t1, t2)
    twin.close()
    after = tr.evaluate()
    assert after.exploitability < 0.5 * before.exploitability
    assert not le.teacher_due(3)
    le.algo.n_updates += 1 - le.algo.n_updates % 2  # odd: the next step is an actor step
    t_obs, t_tgt, w = le._teacher_batch()  # the equilibrium rows alone feed the imitation term
    assert np.ndim(w) == 0 and w == 100.0 and len(t_obs) == cfg.batch_size and np.isfinite(t_tgt[:, :, :2]).all()
    # training keeps the rows (no second computation) and the summary says where the bids come from
    report = tr.equilibrium_teacher_report
    summary = tr.finish(tr.train(), plots=False)
    assert tr.equilibrium_teacher_report == report and summary["equilibrium_teacher"] == report
    out = capsys.readouterr().out
    assert "(trained with the equilibrium teacher: equilibrium found after" in out  # the report, said once
    tr.close()
    d = load_scenario("default")
    dflt = Trainer(d, LearningConfig.from_dict(d.learning_config).with_overrides(SMALL), run_dir=None, seed=0,
                   progress=False, tensorboard=False, env_options={"max_cycles": 24})
    assert not dflt.learner.equilibrium_teacher_wanted(dflt.core)
    # equilibrium_teacher_steps=0: the rows are set, the actors are not fitted to them
    nofit = Trainer(sc, cfg.with_overrides(["equilibrium_teacher_steps=0"]), run_dir=None, seed=0, progress=False,
                    tensorboard=False, env_options={"max_cycles": 24})
    a0 = nofit.learner.act(obs, explore=False)
    nofit.prepare_equilibrium_teacher()
    assert nofit.learner.equilibrium_rows is not None and "fitted" not in nofit.equilibrium_teacher_report
    assert nofit.learner.equilibrium_rollout_rows == []  # the rollouts follow the fit
    np.testing.assert_array_equal(nofit.learner.act(obs, explore=False), a0)
    for extra in (["best_response_teacher=0"], ["equilibrium_teacher=false"], ["analysis_max_agents=20"]):
        off = Trainer(sc, cfg.with_overrides(extra), run_dir=None, seed=0, progress=False, tensorboard=False,
                      env_options={"max_cycles": 24})
        assert not off.learner.equilibrium_teacher_wanted(off.core)
        off.prepare_equilibrium_teacher()
        assert off.equilibrium_teacher_report is None and off.learner.equilibrium_rows is None


def test_teacher_rows_are_drawn_uniformly_from_every_piece_without_concatenating():
    """The teacher's rows come from several (obs, targets) pieces (best-response episodes,
    the equilibrium's path, the rollouts); a draw keeps each row's obs and target together
    and reaches every piece in proportion to its size."""
    from agents.learner import _sample_rows

    sizes = (5, 40, 155)
    data, start = [], 0
    for n in sizes:
        ids = np.arange(start, start + n, dtype=np.float32)
        data.append((np.repeat(ids[:, None, None], 3, axis=2), -ids[:, None, None]))
        start += n
    obs, tgt = _sample_rows(data, 20_000, np.random.default_rng(0))
    assert obs.shape == (20_000, 1, 3) and tgt.shape == (20_000, 1, 1)
    np.testing.assert_array_equal(obs[:, 0, 0], -tgt[:, 0, 0])
    np.testing.assert_array_equal(obs[:, 0, 1], obs[:, 0, 0])
    counts = np.bincount(obs[:, 0, 0].astype(int), minlength=200)
    assert counts.min() > 0 and counts.max() < 200  # uniform: 100 per row expected
    share_first = (obs[:, 0, 0] < 5).mean()
    assert abs(share_first - 5 / 200) < 0.01
    one = _sample_rows(data[:1], 7, np.random.default_rng(1))
    assert one[0].shape == (7, 1, 3) and set(one[0][:, 0, 0]) <= set(range(5))


def test_equilibrium_teacher_auto_covers_two_sided_storage_but_not_signed_bids_or_start_ups():
    """"auto" on example_02e (two learning storage units): on when they bid two-sided
    (break-even targets exist), off with signed storage bids and, as before, off for
    `default` (plants with start-up costs). `equilibrium_teacher_storage_refresh` "auto"
    refreshes the storage units' targets with the best-move storage teacher (the
    default), not with break-even prices."""
    from _examples import assume_example

    sc = load_scenario(assume_example("example_02e"))
    for bids, teacher, want, refresh in (("two_sided", "auto", True, True), ("two_sided", "break_even", True, False),
                                         ("signed", "auto", False, False)):
        cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
            SMALL + [f"storage_bids={bids}", f"storage_teacher={teacher}"])
        tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
        assert tr.learner.equilibrium_teacher_wanted(tr.core) is want, bids
        if want:
            tr.learner.equilibrium_mask[:] = True  # as if the equilibrium teacher taught both
            assert bool(tr.learner._br_taught.all()) is refresh, teacher
        tr.close()


def test_equilibrium_teacher_auto_covers_a_single_learner_without_start_ups():
    """"auto" on `tiny` (one learning plant without start-up costs): on, and the
    prepared teacher's targets for it are its best response to the rule units, ties
    towards its marginal cost; off with `analysis_max_agents` 0 (no analysis)."""
    from envs.analysis import best_response

    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["equilibrium_teacher_steps=0"])
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    assert tr.core.n == 1 and tr.learner.equilibrium_teacher_wanted(tr.core)
    tr.prepare_equilibrium_teacher()
    assert tr.equilibrium_teacher_report.startswith("equilibrium teacher: equilibrium found")
    obs, tgt = tr.learner.equilibrium_rows
    rec = tr.evaluate(analysis=False).record
    br = best_response(rec, 0, ties="cost").best_price  # the others are rules: the same whatever it bids
    cost = sc.plants.marginal_cost[: tgt.shape[0], tr.core.lp[0]]
    margin = cfg.best_response_teacher_margin
    want = np.where(br > cost[:, None], np.maximum(br - margin, cost[:, None]), br) / tr.core.max_bid_price
    np.testing.assert_allclose(tgt[:, 0, :2], np.clip(want, -1, 1), atol=1e-6)
    tr.close()
    off = Trainer(sc, cfg.with_overrides(["analysis_max_agents=0"]), run_dir=None, seed=0, progress=False,
                  tensorboard=False, env_options={"max_cycles": 24})
    assert not off.learner.equilibrium_teacher_wanted(off.core)
    off.close()


def test_equilibrium_teacher_true_also_teaches_start_up_plants_and_two_sided_storage():
    """equilibrium_teacher true on 24 hours of `default` (two CCGTs with start-up costs,
    a storage that bids two-sided; "auto" leaves this market out): the equilibrium with
    whole-volume storage moves is found, every unit is taught by it (no best-response
    refreshes for the plants), and the storage's targets are the break-even prices of its
    whole-volume best response to the equilibrium at the state of charge the env is in.
    With equilibrium_teacher_storage_refresh true every evaluation also teaches the
    storage (`storage_teacher` break_even) the break-even prices of its best response to
    that episode at the states of charge it visited; false (the default): no refreshes at all."""
    from envs.analysis import best_response, equilibrium, storage_break_even_prices

    sc = load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        SMALL + ["equilibrium_teacher=true", "equilibrium_teacher_steps=200", "equilibrium_teacher_storage_refresh=true",
                 "storage_teacher=break_even"])
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    le = tr.learner
    auto = Trainer(sc, cfg.with_overrides(["equilibrium_teacher=auto"]), run_dir=None, seed=0, progress=False,
                   tensorboard=False, env_options={"max_cycles": 24})
    assert le.equilibrium_teacher_wanted(tr.core) and not auto.learner.equilibrium_teacher_wanted(auto.core)
    tr.prepare_equilibrium_teacher()
    assert tr.equilibrium_teacher_report.startswith("equilibrium teacher: equilibrium found")
    obs, tgt = le.equilibrium_rows
    k = list(tr.core.agent_kind).index("storage")
    assert le.equilibrium_mask.all() and np.isfinite(tgt[:, :, :2]).all()
    np.testing.assert_array_equal(le._br_taught, np.arange(tr.n) == k)
    assert le.teacher_due(3) and le.teacher_data == []
    mbp = tr.core.max_bid_price
    eq = equilibrium(sc, hours=24, max_bid_price=mbp, storage_moves="full", max_passes=10)
    full = best_response(eq.record, k, scenario=sc, storage_moves="full")
    core = tr.eval_core
    core.reset(np.random.default_rng(0))
    soc0 = float(core.soc[0, core.ls[0]])
    p = storage_break_even_prices(full, eq.record, states=np.full(24, soc0))[0]
    np.testing.assert_allclose(tgt[0, k, :2], np.clip(2 * p / mbp - 1, -1, 1), atol=1e-6)
    assert np.ptp(obs[:, k, -2]) > 0  # the state of charge moves along the taught path
    # the refresh: the storage's break-even prices against the evaluated episode, at the
    # states of charge it visited; no plant targets
    ev = tr.evaluate()
    (obs_r, tgt_r), = le.teacher_data
    full_r = best_response(ev.record, k, scenario=sc, storage_moves="full", storage_off_grid=False)
    p_r = storage_break_even_prices(full_r, ev.record)
    np.testing.assert_allclose(tgt_r[:, k, :2], 2 * p_r / mbp - 1, atol=1e-6)
    assert np.isnan(tgt_r[:, np.arange(tr.n) != k]).all()
    off = Trainer(sc, cfg.with_overrides(["equilibrium_teacher_storage_refresh=false"]), run_dir=None, seed=0,
                  progress=False, tensorboard=False, env_options={"max_cycles": 24})
    off.prepare_equilibrium_teacher()
    assert not off.learner._br_taught.any() and not off.learner.teacher_due(3)
    off.evaluate()
    assert off.learner.teacher_data == []
    for t in (tr, auto, off):
        t.close()


def test_foresight_auto_sees_a_whole_cycle_of_the_slowest_learning_storage(tmp_path):
    """foresight "auto": 12 steps, unless a learning storage unit takes more than a day to
    fill and empty; then the slowest such cycle in whole days, at most a week, in time
    steps; a number overrides it; the trainer's env, its checkpoints and `evaluate`
    follow it, and a checkpoint of another foresight is refused with the key to set."""
    import dataclasses

    from agents.checkpoint import CheckpointError, load_checkpoint
    from agents.config import auto_foresight
    from agents.trainer import evaluate_policy

    assert auto_foresight(load_scenario("tiny")) == 12  # no storage
    sc = load_scenario("default")  # learning pumped storage: 16 h to fill and empty
    st = sc.storages
    k = int(np.flatnonzero(st.learning)[0])
    usable = (st.max_soc[k] - st.min_soc[k]) * st.capacity[k]
    cycle = usable / (st.max_power_charge[k] * st.efficiency_charge[k]) + usable * st.efficiency_discharge[k] / st.max_power_discharge[k]
    assert 12 < cycle <= 24 and auto_foresight(sc) == 12  # within a day: the default window

    def with_storage(**kw):
        arrays = {f: np.array(getattr(st, f), dtype=float) for f in kw}
        for f, v in kw.items():
            arrays[f][k] = v
        return dataclasses.replace(sc, storages=dataclasses.replace(st, **arrays))

    # 5,000 MWh at 150 MW both ways, lossless, 0..100 %: 66.7 h -> 3 days
    big = with_storage(capacity=5000.0, max_power_charge=150.0, max_power_discharge=150.0, efficiency_charge=1.0,
                       efficiency_discharge=1.0, min_soc=0.0, max_soc=1.0)
    assert auto_foresight(big) == 72
    assert auto_foresight(with_storage(capacity=1e6)) == 168  # at most a week
    assert auto_foresight(with_storage(capacity=4600.0)) == 12  # 23.8 h: within a day
    assert auto_foresight(with_storage(capacity=4700.0)) == 48  # 24.3 h: two days
    quarter = dataclasses.replace(big, time_step_hours=0.25)
    assert auto_foresight(quarter) == 72 * 4  # in time steps
    no_learning = dataclasses.replace(sc, storages=dataclasses.replace(st, learning=np.zeros(len(st.names), dtype=bool)))
    assert auto_foresight(no_learning) == 12

    small = SMALL + ["training_episodes=2", "equilibrium_reference=false"]
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(small)
    assert cfg.foresight == "auto" and cfg.resolved_foresight(sc) == 12 and cfg.resolved_foresight(big) == 72
    cfg = cfg.with_overrides(["foresight=24"])
    assert cfg.resolved_foresight(sc) == cfg.resolved_foresight(big) == 24
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    assert tr.core.foresight == tr.eval_core.foresight == 24 and tr.core.obs_dim == 3 * 24 + 2
    tr.learner.save(tmp_path / "ck")
    cfg12 = cfg.with_overrides(["foresight=12"])
    tr12 = Trainer(sc, cfg12, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})
    assert tr12.core.foresight == 12 and tr12.core.obs_dim == 3 * 12 + 2
    with pytest.raises(CheckpointError, match="foresight=24"):
        load_checkpoint(tmp_path / "ck", tr12.algo, tr12.agents)
    # evaluate reads the checkpoint's foresight, whatever the config says
    ev, core = evaluate_policy(sc, cfg12, tmp_path / "ck", env_options={"max_cycles": 24}, analysis=False)
    assert core.foresight == 24 and ev.record.n_hours == 24
    with pytest.raises(ConfigError, match="foresight"):
        cfg.with_overrides(["foresight=0"])


def _default_trainer(extra, seed=0):
    sc = load_scenario("default")  # two CCGTs with start-up costs and a storage unit
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=2"] + list(extra))
    return Trainer(sc, cfg, run_dir=None, seed=seed, progress=False, tensorboard=False, env_options={"max_cycles": 24})


@pytest.mark.parametrize("setting, plants, weight", [("auto", True, 100.0), ("7", True, 7.0), ("0", False, 0.0)])
def test_plant_cost_floor_lifts_flexible_offers_below_cost(setting, plants, weight):
    """plant_cost_floor: on actor steps, each floored plant's target is its marginal cost
    (+ COST_FLOOR_EPS) for the flexible part exactly where its actor offers that part below
    the cost, NaN elsewhere and for the inflexible part; the storage keeps the teacher's
    weight; "auto" covers `default`'s CCGTs (start-up costs), a number every two-price
    plant, 0 none. Imitation steps on these targets lift the offers above cost."""
    import torch

    from agents import learner as learner_mod

    # plant_bids free: on the grid ("auto" for default) the teacher teaches the plants instead
    tr = _default_trainer([f"plant_cost_floor={setting}", "plant_bids=free"])
    tr.train()
    le = tr.learner
    kinds = np.array(tr.core.agent_kind)
    np.testing.assert_array_equal(le.floor_weight, np.where(kinds == "plant", weight, 0.0))
    batch = le.buffer.sample(learner_mod.CRITIC_SEARCH_STATES + 8)
    le.algo.n_updates += le.algo.n_updates % 2  # the next step is critic-only: no rows
    assert le._with_cost_floor(batch, None) is None
    le.algo.n_updates += 1
    got = le._imitation_batch(batch)
    if not plants:
        assert got is None or np.all(np.asarray(got[2])[kinds == "plant"] == 0)
        return
    obs, tgt, w = got
    np.testing.assert_array_equal(np.asarray(w), np.where(kinds == "plant", weight, 100.0))  # storage: the teacher
    rows = obs[-learner_mod.CRITIC_SEARCH_STATES:]  # the floor's rows follow the teacher's
    assert torch.equal(torch.as_tensor(rows), torch.as_tensor(batch.observations[:learner_mod.CRITIC_SEARCH_STATES]))
    t = torch.as_tensor(tgt)[-learner_mod.CRITIC_SEARCH_STATES:]
    pi = le.algo.act(rows)
    cost_col = le.obs_dim - le.unique_obs_len + 1  # MarketCore.unique_obs: dispatch share, marginal cost
    assert cost_col == 3 * tr.core.foresight + 1
    mc = torch.as_tensor(rows)[:, :, cost_col]
    for k in np.flatnonzero(kinds == "plant"):
        assert np.isclose(mc[0, k].item() * tr.core.max_bid_price, tr.scenario.plants.marginal_cost[0, tr.core.lp[k]],
                          rtol=0.5)  # that entry is the cost
        below = pi[:, k, 1] < mc[:, k]
        assert torch.isnan(t[:, k, 0]).all()
        torch.testing.assert_close(t[below, k, 1], mc[below, k] + learner_mod.COST_FLOOR_EPS)
        assert torch.isnan(t[~below, k, 1]).all()
    # force offers below cost, then imitation steps on the floor's targets alone lift them
    plant = torch.from_numpy(kinds == "plant")
    with torch.no_grad():
        for p in le.algo.actor_params[-1:]:  # last bias: (n, max_act, 1)
            p[plant, 1] -= 3.0
    lo = le.algo.act(rows)[:, plant, 1] < mc[:, plant]
    assert lo.float().mean() > 0.9
    for _ in range(300):  # Adam with gradient clipping: about 250 steps from 3 below in pre-activation
        ft = le._floor_targets(rows)
        le.algo.imitation_step(rows, ft, le.floor_weight)
    assert (le.algo.act(rows)[:, plant, 1] < mc[:, plant] - 0.01).float().mean() < 0.1


def test_plant_cost_floor_auto_leaves_a_single_learner_and_plants_without_start_up_costs():
    """"auto" floors only plants with start-up costs among two or more learners: none on
    tiny's single learner."""
    tr = make(None, ["plant_cost_floor=auto"])
    tr.learner.apply_unit_roles(tr.core)
    if tr.core.n == 1:
        assert not tr.learner.floor_weight.any()
    starts = tr.core.agent_start_up_cost > 0
    assert not tr.learner.floor_weight[~starts].any()


def test_plant_cost_floor_leaves_units_the_teacher_teaches():
    """A plant that the best-response teacher teaches (a number: every unit) gets no floor
    targets, also before the teacher's first refresh."""
    from agents import learner as learner_mod

    tr = _default_trainer(["best_response_teacher=5", "plant_cost_floor=auto"])
    le = tr.learner
    le.apply_unit_roles(tr.core)
    assert le.floor_weight[np.array(tr.core.agent_kind) == "plant"].all() and le.teach_mask.all()
    tr.train(1)  # exploration only: no refresh yet
    assert not le.teacher_data
    le.algo.n_updates += 1 - le.algo.n_updates % 2  # an actor step next
    assert le._with_cost_floor(le.buffer.sample(learner_mod.CRITIC_SEARCH_STATES), None) is None
