import json
from pathlib import Path

import pytest

from bridge import cli
from bridge.scenario import expand, load_runs, load_scenario, parse_scenario, run_key
from qesif_core.errors import UserInputError

MALFORMED = {
    "unknown scheme": ("name: x\nschemes: [QESIF, QESIFF]\n", "schemes[1]", "QESIFF"),
    "typo key": ("name: x\nround: 3\n", "round", "unknown field"),
    "nested typo": ("name: x\nnetwork: {devises: 3}\n", "network.devises", "unknown field"),
    "negative rate": (
        "name: x\nnetwork: {mean_interarrival_s: -0.1}\n",
        "network.mean_interarrival_s",
        "-0.1",
    ),
    "negative channel": (
        "name: x\nchannels: [{name: noisy, intrinsic_error: -1}]\n",
        "channels[0].intrinsic_error",
        "-1",
    ),
    "mqtt qos 2": ("name: x\nnetwork: {mqtt_qos: 2}\n", "network.mqtt_qos", "2"),
    "boolean qos": ("name: x\nnetwork: {mqtt_qos: true}\n", "network.mqtt_qos", "True"),
    "quoted boolean": ("name: x\nnetwork: {coap_confirmable: 'no'}\n", "network.coap_confirmable", "'no'"),
    "empty device queue": ("name: x\nnetwork: {device_queue: 0}\n", "network.device_queue", "0"),
    "wrong type": ("name: x\nrounds: many\n", "rounds", "many"),
    "boolean for a number": ("name: x\nrounds: yes\n", "rounds", "True"),
    "quoted number": ("name: x\nseeds: ['3']\n", "seeds[0]", "'3'"),
    "wrong list type": ("name: x\nseeds: 3\n", "seeds", "3"),
    "invalid yaml": ("name: x\nrounds: [1\n", "invalid YAML", "line"),
    "empty file": ("", "empty", ""),
    "not a mapping": ("- a\n- b\n", "mapping", ""),
    "unknown channel preset": ("name: x\nchannels: [foggy]\n", "channels[0].name", "foggy"),
    "unknown sweep path": ("name: x\nsweeps: {qkd.pulses: [1, 2]}\n", "sweeps.qkd.pulses", "unknown"),
    "bad sweep value": ("name: x\nsweeps: {rounds: [10, -1]}\n", "sweeps.rounds", "-1"),
    "joined sweep of one value": (
        "name: x\nsweeps: {network.mqtt_qos+network.coap_confirmable: [[0, false], 1]}\n",
        "sweeps",
        "list of 2 entries",
    ),
    "unknown qids calibration": (
        "name: x\nqids: {calibration: clean-only}\n",
        "qids.calibration",
        "clean-only",
    ),
    "unknown qids field": ("name: x\nqids: {calibrate: noise-free}\n", "qids.calibrate", "unknown field"),
    "too few calibration blocks": (
        "name: x\nqids: {calibration_blocks: 1}\n",
        "qids.calibration_blocks",
        "1",
    ),
    "qids weights not summing to 1": ("name: x\nqids: {weights: [0.5, 0.5, 0.5]}\n", "qids.weights", "0.5"),
    "unknown qids sweep": (
        "name: x\nsweeps: {qids.calibration_mode: [noise-free]}\n",
        "sweeps.qids.calibration_mode",
        "unknown",
    ),
    "bad qids sweep value": (
        "name: x\nsweeps: {qids.calibration: [link-baseline, literal]}\n",
        "sweeps.qids.calibration",
        "literal",
    ),
    "session rounds zero": ("name: x\nkeys: {session_rounds: 0}\n", "keys.session_rounds", "0"),
    "negative epsilon": ("name: x\nkeys: {epsilon_min: -1}\n", "keys", "epsilon_min must be a number > 0"),
    "hysteresis band": ("name: x\nkeys: {hysteresis: {band: 2}}\n", "keys", "band must be in [0, 1)"),
    "cost out of range": ("name: x\ncosts: {device.cpu_hz: -1}\n", "costs", "-1"),
    "session rounds fraction": ("name: x\nkeys: {session_rounds: 2.5}\n", "keys.session_rounds", "2.5"),
    "session rounds boolean": ("name: x\nkeys: {session_rounds: true}\n", "keys.session_rounds", "True"),
    "session rounds quoted": ("name: x\nkeys: {session_rounds: '10'}\n", "keys.session_rounds", "'10'"),
    "bad session rounds sweep": (
        "name: x\nsweeps: {keys.session_rounds: [10, -1]}\n",
        "sweeps.keys.session_rounds",
        "-1",
    ),
    "missing dataset file": (
        "name: x\ndatasets: [{name: ton_iot, path: nope.csv}]\n",
        "datasets[0].path",
        "nope.csv",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scenario_exits_2_naming_file_and_field(case, tmp_path, capsys):
    text, field, value = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert field in err
    assert value in err
    assert "Traceback" not in err


def test_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: scenario file not found" in capsys.readouterr().err


#: An unknown key in any section: (scenario text, the field named, the nearest valid field named).
UNKNOWN_KEYS = {
    "top level": ("round: 3\n", "round", "rounds"),
    "keys": ("keys: {epsilon_mn: 0.01}\n", "keys.epsilon_mn", "epsilon_min"),
    "keys session": ("keys: {sesion_rounds: 10}\n", "keys.sesion_rounds", "session_rounds"),
    "keys hysteresis": ("keys: {hysteresis: {bnd: 0.1}}\n", "keys.hysteresis.bnd", "band"),
    "costs dotted": ("costs: {device.ghash_blok_cycles: 600}\n", "costs.device.ghash_blok_cycles",
                     "device.ghash_block_cycles"),
    "costs nested": ("costs: {device: {cpu_hzz: 1.0e6}}\n", "costs.device.cpu_hzz", "device.cpu_hz"),
    "network": ("network: {acess: wifi}\n", "network.acess", "access"),
    "qkd": ("qkd: {pulses_per_blok: 10}\n", "qkd.pulses_per_blok", "pulses_per_block"),
    "qids": ("qids: {train_fracton: 0.5}\n", "qids.train_fracton", "train_fraction"),
    "dataset entry": ("datasets: [{name: ton_iot, if_mising: synthetic}]\n", "datasets[0].if_mising",
                      "if_missing"),
    "channel": ("channels: [{name: clean, intrinsic_eror: 0.02}]\n", "channels[0].intrinsic_eror",
                "intrinsic_error"),
    "keys sweep": ("sweeps: {keys.epsilon_mn: [0.1]}\n", "sweeps.keys.epsilon_mn", "epsilon_min"),
    "qkd sweep": ("sweeps: {qkd.pulses_per_blok: [10]}\n", "sweeps.qkd.pulses_per_blok", "pulses_per_block"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(UNKNOWN_KEYS))
def test_unknown_key_in_any_section_names_it_and_the_nearest_valid_one(case, tmp_path, capsys):
    text, field, nearest = UNKNOWN_KEYS[case]
    path = tmp_path / "typo.yaml"
    path.write_text("name: x\n" + text)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"field '{field}'" in err and "unknown field" in err, err
    assert f"nearest valid field: '{nearest}'" in err, err


def test_keys_a_scheme_declares_are_accepted_and_reach_the_run():
    from qesif_core.qids.fusion import DetectorSpec
    from qesif_core.schemes import SecurityScheme, register_scheme
    from qesif_core.schemes.base import _reset_registry_for_tests

    restore = _reset_registry_for_tests()
    try:
        with pytest.raises(UserInputError, match=r"keys\.gate_level"):
            parse_scenario({"name": "t", "keys": {"gate_level": 3}})

        @register_scheme
        class Gate(SecurityScheme):
            name = "Gate"
            description = "test scheme reading keys.gate_level"
            detector = DetectorSpec("decision_tree", False, "none")
            extra_keys = ("gate_level",)

            def plan_session(self, ctx):
                raise AssertionError("not run here")

        scenario = parse_scenario({"name": "t", "datasets": ["ton_iot"], "keys": {"gate_level": 3}})
        assert {r.spec["keys"]["gate_level"] for r in expand(scenario)} == {3}
    finally:
        restore()


def test_a_field_added_to_a_section_model_is_valid_without_other_changes():
    """The unknown-key check reads each section's model: a new field needs no list to update."""
    from pydantic import BaseModel, ConfigDict

    from bridge.scenario import _walk

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        deadline_s: float = 1.0

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        run: Inner | bool = True

    assert _walk(Outer, ("run", "Inner", "dedline_s"), unknown_key=True) == (
        ("run", "dedline_s"),
        "Inner",
        ["deadline_s"],
    )


def test_keys_section_keeps_only_what_the_user_set():
    (run,) = expand(parse_scenario({"name": "t", "datasets": ["ton_iot"], "channels": ["clean"]}))
    assert run.spec["keys"] == {}
    (run,) = expand(
        parse_scenario(
            {
                "name": "t",
                "datasets": ["ton_iot"],
                "channels": ["clean"],
                "keys": {"hysteresis": {"band": 0.2}},
            }
        )
    )
    assert run.spec["keys"] == {"hysteresis": {"band": 0.2}}


def test_defaults_follow_table_2():
    scenario = parse_scenario({"name": "t"})
    assert scenario.network.devices == 100
    assert scenario.network.gateways == 10
    assert scenario.network.mean_interarrival_s == 0.1
    assert scenario.rounds == 100
    assert [c.name for c in scenario.channels] == ["clean", "noisy", "eavesdropped"]


def test_expansion_is_the_full_grid_with_resolved_json_specs():
    scenario = parse_scenario(
        {"name": "t", "schemes": ["QESIF", "QRHE"], "seeds": [1, 2], "datasets": ["ton_iot", "bot_iot"]}
    )
    runs = expand(scenario)
    assert len(runs) == 2 * 3 * 2 * 2
    assert len({r.key for r in runs}) == len(runs)
    spec = runs[0].spec
    json.dumps(spec, allow_nan=False)
    assert set(spec) == {
        "seed",
        "rounds",
        "round_duration_s",
        "backend",
        "deadline_s",
        "dataset",
        "channel",
        "scheme",
        "network",
        "qkd",
        "qids",
        "keys",
        "costs",
    }
    assert spec["channel"]["name"] == "clean" and spec["channel"]["intrinsic_error"] == pytest.approx(0.01)
    eaves = next(r.spec["channel"] for r in runs if r.spec["channel"]["name"] == "eavesdropped")
    assert eaves["eve"] == "intercept-resend"
    assert run_key(spec) == runs[0].key


def test_keys_do_not_depend_on_formatting_or_order(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("name: one\nschemes: [QESIF, QRHE]\nchannels: [clean, noisy]\nrounds: 4\n")
    b.write_text("rounds: 4\nchannels:\n  - noisy\n  - clean\nschemes: [QRHE, QESIF]\nname: other\n")
    keys_a = {r.key for r in load_runs(a)[1]}
    keys_b = {r.key for r in load_runs(b)[1]}
    assert keys_a == keys_b


def test_seed_and_every_parameter_change_the_key():
    base = expand(parse_scenario({"name": "t", "channels": ["clean"]}))[0]
    other_seed = expand(parse_scenario({"name": "t", "channels": ["clean"], "seeds": [2]}))[0]
    other_rate = expand(parse_scenario({"name": "t", "channels": ["clean"], "network": {"devices": 99}}))[0]
    assert len({base.key, other_seed.key, other_rate.key}) == 3


def test_sweeps_over_dotted_paths_set_values_and_itervars():
    scenario = parse_scenario(
        {
            "name": "t",
            "channels": ["noisy"],
            "datasets": ["ton_iot"],
            "sweeps": {"qkd.pulses_per_block": [1000, 2000], "channel.intrinsic_error": [0.02, 0.05]},
        }
    )
    runs = expand(scenario)
    assert len(runs) == 4
    seen = {(r.spec["qkd"]["pulses_per_block"], r.spec["channel"]["intrinsic_error"]) for r in runs}
    assert seen == {(1000, 0.02), (1000, 0.05), (2000, 0.02), (2000, 0.05)}
    assert runs[0].itervars == {"qkd.pulses_per_block": 1000, "channel.intrinsic_error": 0.02}


def test_paths_joined_by_plus_sweep_together():
    scenario = parse_scenario(
        {
            "name": "t",
            "channels": ["clean"],
            "datasets": ["ton_iot"],
            "sweeps": {
                "network.mqtt_qos+network.coap_confirmable": [[0, False], [1, True]],
                "network.access": ["802.15.4", "wifi"],
            },
        }
    )
    runs = expand(scenario)
    assert len(runs) == 4
    seen = {(r.spec["network"]["mqtt_qos"], r.spec["network"]["coap_confirmable"]) for r in runs}
    assert seen == {(0, False), (1, True)}
    assert runs[0].itervars == {
        "network.mqtt_qos": 0,
        "network.coap_confirmable": False,
        "network.access": "802.15.4",
    }


def test_open_sections_accept_new_keys_by_sweep():
    runs = expand(
        parse_scenario(
            {
                "name": "t",
                "datasets": ["ton_iot"],
                "channels": ["clean"],
                "sweeps": {"keys.epsilon_min": [0.5, 2]},
            }
        )
    )
    assert [r.spec["keys"]["epsilon_min"] for r in runs] == [0.5, 2]


def test_relative_dataset_path_and_synthetic_fallback(tmp_path, capsys):
    data = tmp_path / "flows.csv"
    data.write_text("x\n")
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nchannels: [clean]\ndatasets:\n"
        "  - {name: ton_iot, path: flows.csv}\n"
        "  - {name: bot_iot, path: absent.csv, if_missing: synthetic}\n"
    )
    runs = load_runs(path)[1]
    assert runs[0].spec["dataset"]["path"] == str(data.resolve())
    assert runs[1].spec["dataset"]["path"] is None
    assert "absent.csv" in capsys.readouterr().err


def test_shipped_scenarios_are_valid(repo_root):
    for name in ("smoke", "paper", "ablation"):
        _scenario, runs = load_runs(repo_root / "scenarios" / f"{name}.yaml")
        assert runs, name
    paper = load_scenario(repo_root / "scenarios" / "paper.yaml")
    assert paper.rounds == 100
    assert sorted(paper.schemes) == sorted(["QESIF", "QRHE", "HyQuSec", "QuIDS", "QLSN"])


def test_parse_errors_are_user_input_errors():
    with pytest.raises(UserInputError, match="<scenario>: field 'rounds'"):
        parse_scenario({"name": "t", "rounds": 0})


def test_scheme_file_adds_schemes_a_scenario_may_name(tmp_path, repo_root, capsys):
    from qesif_core.schemes.base import _reset_registry_for_tests

    example = repo_root / "docs" / "examples" / "my_baseline.py"
    if not example.is_file():
        pytest.skip("docs/examples/my_baseline.py is absent")
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nschemes: [QESIF, KeyRateGate]\n")
    restore = _reset_registry_for_tests()
    try:
        assert cli.main(["validate", str(path)]) == 2
        assert "'KeyRateGate'" in capsys.readouterr().err
        assert cli.main(["validate", str(path), "--scheme-file", str(example)]) == 0
        assert "18 runs" in capsys.readouterr().out
    finally:
        restore()


def test_qids_defaults_are_those_the_orchestrator_and_the_qids_use():
    import dataclasses

    from bridge.cosim.links import DEFAULT_CALIBRATION_BLOCKS, DEFAULT_CALIBRATION_MODE
    from bridge.scenario import QidsSpec
    from qesif_core.qids.anomaly import QidsParams
    from qesif_core.qids.fusion import BOOSTED_FLOW_THRESHOLD

    spec = QidsSpec().model_dump()
    assert spec.pop("calibration") == DEFAULT_CALIBRATION_MODE == "link-baseline"
    assert spec.pop("calibration_blocks") == DEFAULT_CALIBRATION_BLOCKS
    assert spec.pop("train_fraction") == 0.7  # docs/qids.md: the detector trains on 70 % of the groups
    assert spec.pop("boosted_flow_threshold") == BOOSTED_FLOW_THRESHOLD
    params = dataclasses.asdict(QidsParams())
    params["weights"] = list(params["weights"])
    assert spec == params


def test_qids_calibration_is_in_the_run_spec_and_can_be_swept():
    runs = expand(
        parse_scenario(
            {
                "name": "t",
                "datasets": ["ton_iot"],
                "channels": ["noisy"],
                "sweeps": {"qids.calibration": ["link-baseline", "noise-free"]},
            }
        )
    )
    assert [r.spec["qids"]["calibration"] for r in runs] == ["link-baseline", "noise-free"]
    assert runs[0].key != runs[1].key
    default = expand(parse_scenario({"name": "t", "datasets": ["ton_iot"], "channels": ["noisy"]}))[0]
    assert default.spec["qids"] == runs[0].spec["qids"] and default.spec["qids"]["calibration_blocks"] == 20


def test_session_rounds_is_passed_to_the_run_spec():
    runs = expand(parse_scenario({"name": "x", "keys": {"session_rounds": 10}, "datasets": ["ton_iot"]}))
    assert {run.spec["keys"]["session_rounds"] for run in runs} == {10}


def test_keys_change_with_the_simulation_code(monkeypatch):
    """A stored run computed by other code must not be reused: the key covers the code's fingerprint."""
    from bridge import scenario as scenario_module

    spec = {"seed": 1, "scheme": "QESIF"}
    before = run_key(spec)
    monkeypatch.setattr(scenario_module, "code_fingerprint", lambda: "other-code")
    assert run_key(spec) != before


def test_boosted_flow_threshold_is_checked_and_reaches_the_run(tmp_path):
    from bridge.scenario import load_runs

    base = Path("scenarios/smoke.yaml").read_text(encoding="utf-8")
    base = base.replace("path: data/", f"path: {Path('scenarios/data').resolve()}/")
    good = tmp_path / "good.yaml"
    good.write_text(base + "qids:\n  boosted_flow_threshold: 0.4\n", encoding="utf-8")
    _, runs = load_runs(good)
    assert {r.spec["qids"]["boosted_flow_threshold"] for r in runs} == {0.4}
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "qids:\n  boosted_flow_threshold: 0.7\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="boosted_flow_threshold"):
        load_runs(bad)


@pytest.mark.parametrize("name", ["paper", "ablation", "smoke", "crosscheck"])
def test_shipped_scenarios_validate_and_expand(name):
    _, runs = load_runs(Path("scenarios") / f"{name}.yaml")
    assert runs and len({r.key for r in runs}) == len(runs)


# ------------------------------------------------------------------ the typed run specification
REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "scenarios").glob("*.yaml") if p.stem != "paper_reference")  # not a grid


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_run_spec_round_trips_through_the_typed_spec(path):
    from bridge.scenario import run_spec

    _, runs = load_runs(path)
    for run in runs:
        typed = run_spec(json.loads(json.dumps(run.spec)))  # as the store and a peer hold it
        assert typed.to_dict() == run.spec and list(typed.to_dict()) == list(run.spec)
        assert run_key(typed.to_dict()) == run.key


def test_the_typed_spec_is_frozen_and_typed_and_keeps_an_external_peer():
    from pydantic import ValidationError

    from bridge.cosim.external import external_spec
    from bridge.scenario import run_spec
    from qesif_core.qkd.channel import ChannelParams, preset

    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    typed = run_spec(runs[0].spec)
    with pytest.raises(ValidationError, match="frozen"):
        typed.rounds = 7
    with pytest.raises(ValidationError, match="frozen"):
        typed.network.devices = 7
    assert isinstance(typed.channel.params, ChannelParams) and typed.keys.epsilon_min == 0.01
    assert run_spec(typed) is typed
    assert typed.keys.settings() == runs[0].spec["keys"] == {"epsilon_min": 0.01}  # as set, not filled in
    # a channel given by its preset's name alone is the preset, as ChannelParams.from_dict reads it
    assert run_spec({**runs[0].spec, "channel": {"name": "noisy"}}).channel.params == preset("noisy")
    external = external_spec(runs[0].spec, "sim {endpoint}", "tcp")
    assert run_spec(external).to_dict() == external and run_spec(external).peer.transport == "tcp"
    with pytest.raises(UserInputError, match="peer program"):
        run_spec({**runs[0].spec, "backend": "external"})


def test_a_bad_stored_spec_is_a_user_error_naming_field_and_value():
    from bridge.scenario import run_spec

    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    with pytest.raises(UserInputError, match=r"field 'network\.devices'.*got -3"):
        run_spec({**runs[0].spec, "network": {**runs[0].spec["network"], "devices": -3}})
    with pytest.raises(UserInputError, match=r"'qkd\.pulse_per_block': unknown field.*'pulses_per_block'"):
        run_spec({**runs[0].spec, "qkd": {"pulse_per_block": 10}})


def test_each_layer_takes_its_section_not_the_run_spec():
    """The backends get the network section, the QKD links the qkd section (and the channel), the flow
    split the dataset section: never the whole run spec (their signatures say so)."""
    import inspect

    from bridge.backends.builtin import BuiltinNetwork
    from bridge.backends.omnetpp import cosim_ini_lines
    from bridge.backends.workload import Workload
    from bridge.cosim.links import GatewayLinks
    from bridge.cosim.runsetup import prepare_flows

    def annotations(function) -> list[str]:
        return [str(p.annotation) for p in inspect.signature(function).parameters.values()]

    assert annotations(BuiltinNetwork)[0] == "NetworkSpec"
    assert annotations(cosim_ini_lines)[0] == "NetworkSpec"
    assert annotations(Workload)[0] == "NetworkSpec"
    assert annotations(GatewayLinks)[:4] == ["QkdSpec", "ChannelParams", "QidsParams", "QidsSpec"]
    assert annotations(prepare_flows)[0] == "DatasetSpec"
    for layer in (BuiltinNetwork, cosim_ini_lines, Workload, GatewayLinks, prepare_flows):
        assert not any("RunSpec" in a or "Mapping" in a for a in annotations(layer)), layer
