"""examples/plan_pusht.py on a few generated PushT episodes: the action interface and the evaluation protocol."""

from pathlib import Path

import numpy as np
import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.data.pusht import main as record_pusht
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from conftest import load_script, randomize_outputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plan_pusht():
    return load_script("examples/plan_pusht.py")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht") / "dataset"
    record_pusht(["--episodes", "2", "--out", str(out), "--max-steps", "40", "--workers", "1", "--codec", "libx264"])
    return out


def tiny_pipeline(aggregation: str = "sum", state_dim: int = 2) -> WorldModelPipeline:
    """A random tiny world model on the tiny encoder, with PushT-like action (sum of 5 targets, or with "concat" the
    5 targets side by side, action_dim 10) and state statistics (none with `state_dim=0`)."""
    config = ArgosWorldModelConfig.from_pretrained(ROOT / "hub_configs" / "argos-wm-tiny")
    config.update(dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                       num_hidden_layers=2, latent_bottleneck_dim=16, signal_embedding_dim=32, state_dim=state_dim))  # fmt: skip
    actions = {"mean": [1280.0, 1280.0], "std": [500.0, 500.0]}
    if aggregation == "concat":
        config.update(dict(action_dim=10))
        actions = {"mean": [256.0] * 10, "std": [100.0] * 10}
    states = {"mean": [256.0, 256.0], "std": [100.0, 100.0]} if state_dim else None
    torch.manual_seed(0)
    pipe = WorldModelPipeline(
        randomize_outputs(ArgosWorldModel(config)),  # a model whose predictions depend on the actions
        ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps),
        encoder=ArgosDinoEncoder.from_name_or_path(ROOT / "hub_configs" / "argos-dino-encoder-tiny"),
        normalizer=ActionStateNormalizer.from_statistics(actions, states, action_aggregation=aggregation, frameskip=5),
    )  # fmt: skip
    return pipe


def test_action_space_holds_and_bounds_targets_within_reach(plan_pusht):
    space = plan_pusht.PushTActionSpace(frameskip=5, aggregation="sum")
    observation = {"agent_pos": np.array([100.0, 480.0])}
    np.testing.assert_allclose(space.hold(observation), [500.0, 2400.0])
    low, high = space.bounds(observation, reach=50.0)
    np.testing.assert_allclose(low, [250.0, 2150.0])  # 5 x (agent - 50)
    np.testing.assert_allclose(high, [750.0, 2560.0])  # clipped to the 512 px workspace
    np.testing.assert_allclose(space.to_simulator(space.hold(observation)), observation["agent_pos"])
    recorded = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.testing.assert_allclose(space.from_simulator(recorded), [[20.0, 25.0], [70.0, 75.0]])  # sums of 5
    np.testing.assert_allclose(space.bounds(observation, reach=0.0)[1], [2560.0, 2560.0])


def test_evaluate_pusht_reports_every_method(plan_pusht, dataset):
    results = plan_pusht.evaluate_pusht(
        tiny_pipeline(), dataset, num_goals=2, num_eval_episodes=1, horizon=2,
        num_samples=4, num_elites=2, iterations=1, device="cpu",
    )  # fmt: skip
    assert len(results["goals"]) == 2 and results["thresholds"] == {"position_px": 20.0, "angle_rad": np.pi / 9}
    assert "simulator" not in results  # run on request only
    for method in plan_pusht.DEFAULT_METHODS:
        summary = results[method]
        assert 0.0 <= summary["success_rate"] <= 1.0 and np.isfinite(summary["mean_cost_reached"])
    assert results["world_model"]["mean_plan_seconds"] > 0
    # replaying the recorded actions (held for 5 steps) lands near the goal; random targets do not
    assert results["replay"]["mean_position_error"] < 25.0 < results["random"]["mean_position_error"], results
    # the context's signal level reaches the planner: a clean context predicts, and so costs, otherwise
    clean = plan_pusht.evaluate_pusht(
        tiny_pipeline(), dataset, num_goals=2, num_eval_episodes=1, horizon=2, num_samples=4, num_elites=2,
        iterations=1, device="cpu", methods=["world_model"], context_signal_level=1.0,
    )  # fmt: skip
    assert clean["world_model"]["mean_plan_cost"] != results["world_model"]["mean_plan_cost"]
    assert clean["settings"]["context_signal_level"] == 1.0 and results["settings"]["context_signal_level"] == 0.9
    # heading for the goal's agent position beats random targets
    assert results["goal_agent"]["mean_position_error"] < results["random"]["mean_position_error"], results


def test_a_model_without_proprio_plans_on_latents(plan_pusht, dataset):
    """`state_dim=0`: the world model and the simulator plan, and the reached cost is scored, on latents alone (the
    environment's agent position is not handed to a model that has no state token)."""
    results = plan_pusht.evaluate_pusht(
        tiny_pipeline(state_dim=0), dataset, num_goals=2, num_eval_episodes=1, horizon=2, num_samples=4, num_elites=2,
        iterations=1, device="cpu", methods=["world_model", "simulator", "goal_agent"],
    )  # fmt: skip
    for run in ("mpc_cem", "simulator", "goal_agent"):
        assert np.isfinite(results[run]["mean_cost_reached"]), (run, results[run])
    assert np.isfinite(results["mpc_cem"]["mean_plan_cost"]) and np.isfinite(results["simulator"]["mean_plan_cost"])


def test_more_context_frames_reach_the_planner(plan_pusht, dataset):
    """`num_context_frames=2`: the second plan of a goal sees the frame before too, so it predicts, and costs,
    otherwise than with one frame."""
    settings = dict(num_goals=2, num_eval_episodes=1, horizon=2, num_samples=4, num_elites=2, iterations=1,
                    device="cpu", methods=["world_model"])  # fmt: skip
    one = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, **settings)
    two = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, num_context_frames=2, **settings)
    assert one["world_model"]["mean_plans"] == two["world_model"]["mean_plans"] == 2.0
    assert two["world_model"]["mean_plan_cost"] != one["world_model"]["mean_plan_cost"]
    assert (one["settings"]["num_context_frames"], two["settings"]["num_context_frames"]) == (1, 2)


def test_an_ensemble_of_pipelines_plans_together(plan_pusht, dataset, tmp_path):
    """`--ensemble`: the pipelines given plan with `--pipeline`, each candidate costing the mean of their costs, so
    the plans (and their predicted cost) are neither model's alone."""
    member = tiny_pipeline()
    with torch.no_grad():
        for parameter in member.world_model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    member.save_pretrained(tmp_path / "member")
    settings = dict(num_goals=2, num_eval_episodes=1, horizon=2, num_samples=4, num_elites=2, iterations=1,
                    device="cpu", methods=["world_model"])  # fmt: skip
    alone = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, **settings)
    together = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, ensemble=[str(tmp_path / "member")], **settings)
    assert together["settings"]["ensemble"] == [str(tmp_path / "member")] and alone["settings"]["ensemble"] == []
    assert together["world_model"]["mean_plan_cost"] != alone["world_model"]["mean_plan_cost"]
    assert np.isfinite(together["world_model"]["mean_plan_cost"])


def test_planning_config_errors(plan_pusht):
    with pytest.raises(ValueError, match="num_context_frames must be >= 1, got 0"):
        plan_pusht.PushTPlanningConfig(num_context_frames=0)
    with pytest.raises(ValueError, match="reach must be >= 0"):
        plan_pusht.PushTPlanningConfig(reach=-1.0)
    with pytest.raises(ValueError, match=r"context_signal_level must be in \(0, 1\], got 1.5"):
        plan_pusht.PushTPlanningConfig(context_signal_level=1.5)
    with pytest.raises(ValueError, match="action_aggregation"):
        plan_pusht.PushTPlanningConfig(action_aggregation="median")


def test_action_space_comes_from_the_pipeline(plan_pusht):
    """The aggregation a pipeline was trained with is read from it; a contradicting flag is an error."""
    pipe = tiny_pipeline()
    space = plan_pusht.PushTActionSpace.from_pipeline(pipe)
    assert (space.frameskip, space.aggregation) == (5, "sum")
    with pytest.raises(ValueError, match=r"action_aggregation='last' disagrees.*'sum'"):
        plan_pusht.PushTActionSpace.from_pipeline(pipe, aggregation="last")
    pipe.normalizer = ActionStateNormalizer.from_statistics({"mean": [0, 0], "std": [1, 1]}, {"mean": [0, 0], "std": [1, 1]})
    with pytest.raises(ValueError, match="does not record how its actions were aggregated.*--frameskip and --action_ag"):
        plan_pusht.PushTActionSpace.from_pipeline(pipe)
    with pytest.raises(ValueError, match="pass --action_aggregation as"):  # every missing flag is named at once
        plan_pusht.PushTActionSpace.from_pipeline(pipe, frameskip=5)
    space = plan_pusht.PushTActionSpace.from_pipeline(pipe, frameskip=5, aggregation="last")
    np.testing.assert_allclose(space.hold({"agent_pos": np.array([10.0, 20.0])}), [10.0, 20.0])


@pytest.mark.parametrize("aggregation", ["sum", "mean", "last"])
def test_held_targets_round_trip_through_every_aggregation(plan_pusht, aggregation):
    space = plan_pusht.PushTActionSpace(frameskip=5, aggregation=aggregation)
    targets = np.array([[100.0, 300.0], [250.0, 40.0]], dtype=np.float32)
    held = np.repeat(targets, 5, axis=0)  # each target held for 5 simulator steps
    model_actions = space.from_simulator(held)
    np.testing.assert_allclose(model_actions, targets * (5 if aggregation == "sum" else 1))
    np.testing.assert_allclose(np.stack([space.to_simulator(a) for a in model_actions]), targets)


def test_concat_action_space_maps_both_ways(plan_pusht):
    """concat: a model action is the 5 targets side by side; held targets give 5 copies, recorded ones come back
    exactly, one per simulator step."""
    space = plan_pusht.PushTActionSpace(frameskip=5, aggregation="concat")
    observation = {"agent_pos": np.array([100.0, 480.0])}
    np.testing.assert_allclose(space.hold(observation), np.tile([100.0, 480.0], 5))
    low, high = space.bounds(observation, reach=50.0)
    np.testing.assert_allclose(low, np.tile([50.0, 430.0], 5))
    np.testing.assert_allclose(high, np.tile([150.0, 512.0], 5))
    recorded = np.random.default_rng(0).uniform(0, 512, size=(10, 2)).astype(np.float32)
    model_actions = space.from_simulator(recorded)
    assert model_actions.shape == (2, 10)
    np.testing.assert_array_equal(np.concatenate([space.simulator_steps(a) for a in model_actions]), recorded)
    np.testing.assert_allclose(space.to_simulator(model_actions[0]), recorded[:5].mean(0), rtol=1e-6)
    held = plan_pusht.PushTActionSpace(frameskip=5, aggregation="sum")  # sum: one target held for the 5 steps
    np.testing.assert_allclose(held.simulator_steps([500.0, 2400.0]), np.tile([100.0, 480.0], (5, 1)))
    # candidates [M, H, A] map at once to their targets [M, H, 5, 2]
    np.testing.assert_array_equal(space.simulator_steps(model_actions[None]), recorded.reshape(1, 2, 5, 2))
    plans = np.array([[[500.0, 2400.0], [0.0, 5000.0]]] * 3)  # [3, 2, 2]; 5000 / 5 is clipped to the workspace
    np.testing.assert_allclose(held.simulator_steps(plans)[:, 1], np.tile([0.0, 512.0], (3, 5, 1)))


def test_replay_is_exact_with_concat_actions(plan_pusht, dataset):
    """The recorded targets replayed through the concat action space reach the goal state exactly; every method acts
    through the same interface, and the block-must-move subset is reported beside all goals."""
    results = plan_pusht.evaluate_pusht(
        tiny_pipeline("concat"), dataset, num_goals=2, num_eval_episodes=2, horizon=2, planners=["cem", "icem"],
        num_samples=4, num_elites=2, iterations=1, device="cpu",
    )  # fmt: skip
    assert results["settings"]["action_aggregation"] == "concat"
    assert results["replay"]["success_rate"] == 1.0 and results["replay"]["mean_position_error"] < 1e-6, results
    assert results["replay"]["mean_angle_error"] < 1e-6
    moving = [goal["block_must_move"] for goal in results["goals"]]
    assert results["num_block_moving_goals"] == sum(moving)
    for run in ("mpc_cem", "mpc_icem", "random", "goal_agent", "replay"):
        assert results[run]["num_goals"] == 2 and results[run]["block_moving"]["num_goals"] == sum(moving)
    assert results["world_model"] == results["mpc_cem"] and results["mpc_icem"]["mean_plan_seconds"] > 0
    assert plan_pusht.report_line("mpc_icem", results["mpc_icem"]).startswith("mpc_icem    success")
    # the sum of 5 targets, held, only approximates the recorded (noisy, changing) targets
    summed = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, num_goals=2, num_eval_episodes=2, horizon=2,
                                       methods=["replay"], device="cpu")  # fmt: skip
    assert summed["replay"]["mean_position_error"] > 1e-3 and "mpc_cem" not in summed


def test_presets_and_block_must_move(plan_pusht):
    dino = plan_pusht.PushTPlanningConfig(preset="dino_wm")
    assert (dino.num_samples, dino.num_elites, dino.iterations, dino.horizon, dino.execute_steps) == (300, 30, 30, 5, 5)
    assert (dino.cost_steps, dino.state_weight, dino.init_std) == ("final", 1.0, 1.0)
    assert (dino.reach, dino.initial_action) == (0.0, "mean")
    assert dino.max_steps == 5
    cpu = plan_pusht.PushTPlanningConfig(iterations=2)  # a flag given overrides the preset
    assert (cpu.num_samples, cpu.iterations, cpu.execute_steps, cpu.cost_steps) == (32, 2, 1, "all")
    assert isinstance(dino.planner("icem"), plan_pusht.ICEMPlanner) and dino.planner("icem").num_elites == 30
    with pytest.raises(ValueError, match="preset must be one of"):
        plan_pusht.PushTPlanningConfig(preset="gpu")
    with pytest.raises(ValueError, match="first_goal must be in"):
        plan_pusht.PushTPlanningConfig(num_goals=4, first_goal=4)
    with pytest.raises(ValueError, match="planners must be among"):
        plan_pusht.PushTPlanningConfig(planners=["beam"])
    start = np.array([100.0, 100.0, 200.0, 200.0, 0.1])
    assert not plan_pusht.block_must_move(start, start + [50.0, 50.0, 5.0, 5.0, 0.1])  # only the agent moved
    assert plan_pusht.block_must_move(start, start + [0.0, 0.0, 9.0, 9.0, 0.0])  # 12.7 px
    assert plan_pusht.block_must_move(start, start + [0.0, 0.0, 0.0, 0.0, 2 * np.pi - 0.2])  # turned 0.2 rad


def test_search_starts_from_the_goal_agent_action(plan_pusht, dataset):
    """`initial_action="goal_agent"`: with a search that cannot move (std ~0, one iteration), MPC executes exactly
    what the goal_agent baseline does; started from "hold" it keeps the agent where it is."""
    settings = dict(num_goals=2, num_eval_episodes=1, horizon=2, num_samples=4, num_elites=2, iterations=1,
                    init_std=1e-6, reach=0.0, methods=["world_model", "goal_agent"], device="cpu")  # fmt: skip
    from_goal = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, initial_action="goal_agent", **settings)
    for goal in from_goal["goals"]:
        assert goal["mpc_cem"]["position_error"] == pytest.approx(goal["goal_agent"]["position_error"], abs=1e-3)
    from_hold = plan_pusht.evaluate_pusht(tiny_pipeline(), dataset, initial_action="hold", **settings)
    assert any(
        abs(goal["mpc_cem"]["position_error"] - goal["goal_agent"]["position_error"]) > 1.0
        for goal in from_hold["goals"]
    ), from_hold["goals"]


def test_simulator_planning_scores_the_recorded_plan_as_reaching_the_goal(plan_pusht):
    """`SimulatorPlanning` rolls candidates out in the simulator from the real state: started from the actions that
    produced the goal (no contact, so the copy is exact), its plan is those actions at a cost of ~0, and moving off
    them costs more."""
    from argos_wm.data.pusht import make_pusht_env
    from argos_wm.data.pusht_simulator import PushTPhysicsState, PushTSimulator
    from argos_wm.planning import CEMPlanner, SimulatorPlanning

    pipe, space = tiny_pipeline("concat"), plan_pusht.PushTActionSpace(frameskip=5, aggregation="concat")
    env, simulator = make_pusht_env(96), PushTSimulator(96)
    start_state = [150.0, 400.0, 350.0, 150.0, 0.5]  # the agent far from the block
    observation, _ = env.reset(options={"reset_to_state": start_state})
    targets = observation["agent_pos"] + np.random.default_rng(0).normal(0, 30, (3, 5, 2))
    recorded = space.from_simulator(targets.reshape(15, 2))  # [3, 10]
    for target in targets.reshape(15, 2):
        goal, *_ = env.step(target)
    env.reset(options={"reset_to_state": start_state})

    def simulate(actions):
        return simulator.rollout(PushTPhysicsState.of(env), space.simulator_steps(actions))[:2]

    planning = SimulatorPlanning(pipe, simulate)
    goal_latents = planning.encode_images(goal["pixels"][None, None])[:, 0]
    common = dict(goal_latents=goal_latents, goal_states=goal["agent_pos"][None], horizon=3, cost_steps="final")
    plan = planning.plan(planner=CEMPlanner(num_samples=4, num_elites=2, iterations=1, init_std=0.5),
                         init_actions=recorded[None], **common)  # fmt: skip
    assert float(plan.cost[0]) < 1e-6
    np.testing.assert_allclose(plan.actions[0].numpy(), recorded, atol=1e-2)
    off = planning.plan(planner=CEMPlanner(num_samples=2, num_elites=2, iterations=1, init_std=1e-3),
                        init_actions=recorded[None] + 60.0, **common)  # fmt: skip
    assert float(off.cost[0]) > 1e-3
    with pytest.raises(ValueError, match="planner must be a configured sampling planner"):
        planning.plan(planner="cem", **common)


def test_success_compares_the_block_bodys_position_as_dino_wm_does(plan_pusht):
    """Two stored states with the same centre of gravity, the block turned by 0.3 rad: gym-pusht's block body
    positions (what DINO-WM compares) lie 2 * 45 * sin(0.15) = 13.4 px apart."""
    goal, state = np.array([100.0, 100.0, 250.0, 260.0, 0.0]), np.array([100.0, 100.0, 250.0, 260.0, 0.3])
    success, position_error, angle_error = plan_pusht.pusht_success(goal, state)
    assert success and position_error == pytest.approx(90 * np.sin(0.15)) and angle_error == pytest.approx(0.3)
    state[2] += 8.0  # 8 px more along x: sqrt(13.4^2 + ...) crosses 20 px only with the rotation counted
    assert not plan_pusht.pusht_success(goal, state)[0]
