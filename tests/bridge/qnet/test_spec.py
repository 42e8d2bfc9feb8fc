"""The ``quantum_network`` scenario section: every mistake names the file and field; resolution fills the
defaults and is idempotent; a scenario without the section resolves exactly as before."""

from __future__ import annotations

import copy

import pytest

from bridge.qnet.spec import resolve_section
from bridge.scenario import expand, parse_scenario, run_key
from qesif_core.errors import UserInputError


def error_of(data) -> str:
    with pytest.raises(UserInputError) as err:
        expand(parse_scenario(data, "city.yaml"), "city.yaml")
    return str(err.value)


def test_resolved_links_take_the_run_defaults(scenario):
    (run,) = expand(parse_scenario(scenario, "city.yaml"), "city.yaml")
    section = run.spec["quantum_network"]
    first = section["links"][0]
    assert first["name"] == "gw1--r1" and first["protocol"] == "bb84" and first["source"] == "builtin"
    assert first["channel"]["name"] == "clean" and first["channel"]["distance_km"] == 3.0
    assert first["pulses_per_block"] == 1_000_000 and first["repeater"] is None
    assert section["links"][1]["eve"] == {
        "mode": "intercept-resend",
        "fraction": 0.56,
        "start_s": 40.0,
        "end_s": 80.0,
    }
    assert section["monitor"] == {"source": "gw1", "target": "cc"}
    assert section["routing"] == {"policies": ["adaptive", "static"], "depletion_weight": 1.0}
    again = resolve_section(
        "x",
        section,
        channel=run.spec["channel"],
        qkd=run.spec["qkd"],
        network=run.spec["network"],
        backend="builtin",
    )
    assert again == section


def test_link_channel_and_repeater(scenario):
    links = scenario["quantum_network"]["links"]
    links[3]["channel"] = {"name": "noisy", "detector_efficiency": 0.3}
    links[4]["repeater"] = {"segments": 3}
    links[4]["source"] = "quisp"
    (run,) = expand(parse_scenario(scenario, "city.yaml"), "city.yaml")
    resolved = run.spec["quantum_network"]["links"]
    assert (
        resolved[3]["channel"]["intrinsic_error"] == 0.07
        and resolved[3]["channel"]["detector_efficiency"] == 0.3
    )
    assert resolved[3]["channel"]["distance_km"] == 7.0
    assert resolved[4]["protocol"] == "bbm92" and resolved[4]["repeater"] == {"segments": 3, "memories": 10}


def test_without_the_section_the_spec_is_unchanged(scenario):
    plain = {k: v for k, v in scenario.items() if k != "quantum_network"}
    plain["network"] = {"devices": 20, "gateways": 2, "mean_interarrival_s": 1.0}
    (run,) = expand(parse_scenario(plain, "p.yaml"), "p.yaml")
    assert "quantum_network" not in run.spec
    assert run.key == run_key(run.spec)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda q: q["links"].append({"a": "gw1", "b": "ghost", "distance_km": 2}),
            "field 'quantum_network.links[5].b': unknown node 'ghost'",
        ),
        (
            lambda q: q["links"][0].update(distance_km=0),
            "field 'quantum_network.links[0].distance_km': must be > 0 km",
        ),
        (lambda q: q["links"][0].update(distance_km=-3.0), "quantum_network.links[0].distance_km"),
        (
            lambda q: q["links"][0].update(colour="red"),
            "field 'quantum_network.links[0].colour': unknown field",
        ),
        (lambda q: q.update(bandwidth=3), "field 'quantum_network.bandwidth': unknown field"),
        (
            lambda q: q["nodes"].append({"name": "gw3", "zone": "east", "role": "gateway"}),
            "field 'quantum_network.nodes[5]': no chain of links joins 'gw3' and 'cc'",
        ),
        (lambda q: q["nodes"][1].update(role="router"), "quantum_network.nodes[1].role"),
        (
            lambda q: q.update(monitor={"source": "gw1", "target": "nowhere"}),
            "field 'quantum_network.monitor': unknown node 'nowhere'",
        ),
        (lambda q: q["links"][1]["eve"].update(end_s=10), "field 'quantum_network.links[1].eve'"),
        (
            lambda q: q["links"][0].update(repeater={"segments": 1}),
            "quantum_network.links[0].repeater.segments",
        ),
        (
            lambda q: q["links"][0].update(repeater={"segments": 2}, protocol="bb84"),
            "field 'quantum_network.links[0].protocol': a repeater link distributes entangled pairs",
        ),
        (
            lambda q: q["links"][0].update(channel={"name": "clean", "distance_km": 9}),
            "field 'quantum_network.links[0].channel.distance_km'",
        ),
        (lambda q: q["links"][0].update(channel={"name": "murky"}), "unknown channel preset 'murky'"),
        (
            lambda q: q["links"][0].update(channel={"name": "clean", "wavelength": 1}),
            "field 'quantum_network.links[0].channel.wavelength': unknown field",
        ),
        (lambda q: q.update(key_bits=100), "field 'quantum_network.key_bits'"),
        (
            lambda q: q["routing"].update(policies=["adaptive", "adaptive"]),
            "quantum_network.routing.policies",
        ),
    ],
)
def test_mistakes_name_file_and_field(scenario, edit, expected):
    edit(scenario["quantum_network"])
    message = error_of(scenario)
    assert message.startswith("city.yaml: ") and expected in message, message


def test_gateway_count_and_backend_must_match(scenario):
    wrong = copy.deepcopy(scenario)
    wrong["network"]["gateways"] = 5
    assert "field 'network.gateways': the quantum network has 2 gateway nodes" in error_of(wrong)
    omnet = copy.deepcopy(scenario)
    omnet["backend"] = "omnetpp"
    assert "field 'backend'" in error_of(omnet)


def test_sweeps_reach_the_section(scenario):
    scenario["sweeps"] = {"quantum_network.pool_capacity": [10, 20]}
    runs = expand(parse_scenario(scenario, "city.yaml"), "city.yaml")
    assert [r.spec["quantum_network"]["pool_capacity"] for r in runs] == [10, 20]
    scenario["sweeps"] = {"quantum_network.pool_capacity": [0]}
    assert "quantum_network.pool_capacity" in error_of(scenario)
