"""How many model actors a job starts and may grow to, with what CPUs and GPUs (raysr/job/actors.py)."""

import pytest

def test_model_actors_get_one_cpu_beside_a_gpu_and_the_cores_without_one():
    import os

    from raysr.job.actors import cpus_per_actor
    from raysr.job.spec import parse_spec

    spec = parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}})
    assert cpus_per_actor(spec, num_gpus=1) == 1
    assert 1 <= cpus_per_actor(spec, num_gpus=0) <= (os.cpu_count() or 1)
    pinned = parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}, "resources": {"cpus_per_actor": 3}})
    assert cpus_per_actor(pinned, num_gpus=0) == 3 and cpus_per_actor(pinned, num_gpus=1) == 3


def _spec(**resources):
    from raysr.job.spec import parse_spec

    return parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"}, "resources": resources})


def test_actor_cpus_leave_room_for_reading_and_writing():
    from raysr.job.actors import fit_actor_cpus

    # Enough CPUs: the share asked for stands.
    assert fit_actor_cpus(_spec(cpus_per_actor=2), num_gpus=0, actors=1, cluster_cpus=4) == 2
    assert fit_actor_cpus(_spec(), num_gpus=1, actors=2, cluster_cpus=3) == 1
    # A default share that would hold every CPU of a one-node cluster shrinks (the job hung before).
    from raysr.job.actors import cpus_per_actor

    node_cores = cpus_per_actor(_spec(), num_gpus=0)  # the default: a node's cores
    if node_cores >= 2:
        assert fit_actor_cpus(_spec(), num_gpus=0, actors=1, cluster_cpus=node_cores) == node_cores - 1
    assert fit_actor_cpus(_spec(cpus_per_actor=3), num_gpus=0, actors=2, cluster_cpus=8) == 3


def test_a_configured_share_that_leaves_no_cpu_for_reading_is_refused():
    from raysr.job.actors import PlanError, fit_actor_cpus

    with pytest.raises(PlanError, match=r"ask for 4 CPUs \(2 actor\(s\) × 2 CPUs\) of the "
                                        r"cluster's 4.*lower resources.cpus_per_actor"):
        fit_actor_cpus(_spec(cpus_per_actor=2), num_gpus=0, actors=2, cluster_cpus=4)
    with pytest.raises(PlanError):  # beside GPUs too: each actor still holds a CPU
        fit_actor_cpus(_spec(actors_per_model=3), num_gpus=1, actors=3, cluster_cpus=3)


def _routes_spec(**extra):
    from raysr.job.spec import parse_spec

    return parse_spec({"name": "j", "inputs": ["in"], "output": {"path": "out"},
                       "routes": {"anime": {"model": "realesr-animevideov3"}}, **extra})


@pytest.mark.parametrize("resources, items, expected", [
    ({"GPU": 8, "CPU": 64}, {"photo": 1000, "anime": 10}, {"photo": 7, "anime": 1}),  # every GPU, by work
    ({"GPU": 8, "CPU": 64}, {"photo": 3, "anime": 0}, {"photo": 3}),  # never more actors than items
    ({"GPU": 1, "CPU": 8}, {"photo": 5, "anime": 5}, {"photo": 1, "anime": 1}),  # fewer GPUs than pools: one each
    ({"GPU": 8, "CPU": 4.5}, {"photo": 100}, {"photo": 4}),  # each GPU actor holds a CPU; reads keep 0.5
    ({"CPU": 64}, {"photo": 100, "anime": 100}, {"photo": 1, "anime": 1}),  # CPU actors take a node each
])
def test_by_default_every_gpu_gets_a_model_actor(resources, items, expected):
    from raysr.job.actors import actor_layout

    layout = actor_layout(_routes_spec(), items, resources)
    assert layout.actors == expected
    assert layout.total == sum(expected.values())
    assert layout.gpus_per_actor == (1.0 if "GPU" in resources else 0.0)


def test_actor_layout_follows_the_spec_where_it_says():
    from raysr.job.actors import actor_layout

    ensemble = _routes_spec(routes={"photo": {"model": "RealESRGAN_x4plus",
                                              "ensemble": [{"model": "realesr-general-x4v3", "weight": 0.3}]}})
    layout = actor_layout(ensemble, {"photo": 100}, {"GPU": 5, "CPU": 64})
    assert layout.actors == {"photo": 2} and layout.total == 4  # two pools (model + member): 2 × 2 of 5 GPUs
    fixed = actor_layout(_routes_spec(resources={"actors_per_model": 3}), {"photo": 100, "anime": 1}, {"GPU": 8, "CPU": 64})
    assert fixed.actors == {"photo": 3, "anime": 3} and fixed.total == 6
    halves = actor_layout(_routes_spec(resources={"gpus_per_actor": 0.5}), {"photo": 100}, {"GPU": 2, "CPU": 64})
    assert halves.actors == {"photo": 4} and halves.gpus_per_actor == 0.5
    pinned = actor_layout(_routes_spec(resources={"actor_resources": {"sr_node": 1}}), {"photo": 100},
                          {"CPU": 64, "sr_node": 3})
    assert pinned.actors == {"photo": 3} and pinned.gpus_per_actor == 0.0  # CPU actors: as many as the nodes allow


def test_gpu_pools_may_grow_as_gpus_join_and_cpu_or_counted_pools_stay():
    from raysr.job.actors import actor_layout

    auto = actor_layout(_routes_spec(), {"photo": 1000, "anime": 10}, {"GPU": 8, "CPU": 64})
    assert auto.actors == {"photo": 7, "anime": 1}
    assert auto.max_actors == {"photo": 1000, "anime": 10}  # no route more actors than items
    assert auto.describe() == "photo 7 per pool (up to 1000 as the cluster grows), anime 1 per pool (up to 10 as the cluster grows)"
    capped = actor_layout(_routes_spec(resources={"max_actors_per_model": 16}), {"photo": 1000, "anime": 10},
                          {"GPU": 8, "CPU": 64})
    assert capped.max_actors == {"photo": 16, "anime": 10}
    shared = actor_layout(_routes_spec(resources={"max_actors_per_model": 4}), {"photo": 1000}, {"GPU": 8, "CPU": 64})
    assert shared.actors == shared.max_actors == {"photo": 4} and shared.total == 4  # the cap holds from the start
    counted = actor_layout(_routes_spec(resources={"actors_per_model": 3}), {"photo": 100}, {"GPU": 8, "CPU": 64})
    assert counted.max_actors == {"photo": 3} and counted.describe() == "photo 3 per pool"
    counted_up = actor_layout(_routes_spec(resources={"actors_per_model": 3, "max_actors_per_model": 6}),
                              {"photo": 100}, {"GPU": 8, "CPU": 64})
    assert counted_up.actors == {"photo": 3} and counted_up.max_actors == {"photo": 6}
    cpu = actor_layout(_routes_spec(), {"photo": 100}, {"CPU": 64})
    assert cpu.max_actors == cpu.actors == {"photo": 1}
    # No GPU yet on an autoscaling cluster, GPUs asked for: one actor (Ray's autoscaler adds the
    # node it waits for), then the pool follows the GPUs that join.
    waiting = actor_layout(_routes_spec(resources={"gpus_per_actor": 1}), {"photo": 100}, {"CPU": 4})
    assert waiting.actors == {"photo": 1} and waiting.max_actors == {"photo": 100}


def test_a_ceiling_below_the_start_count_is_refused():
    from raysr.job.spec import SpecError

    with pytest.raises(SpecError, match=r"max_actors_per_model \(2\) is below actors_per_model \(4\)"):
        _spec(actors_per_model=4, max_actors_per_model=2)


def test_the_session_cluster_gets_one_actor_per_declared_gpu(ray_cluster):
    import ray

    from raysr.job.actors import actor_layout

    layout = actor_layout(_routes_spec(), {"photo": 10}, ray.cluster_resources())
    assert layout.actors == {"photo": 2} and layout.gpus_per_actor == 1.0


def test_an_actor_larger_than_every_node_is_named_with_the_nodes_it_would_need():
    from raysr.job.actors import unplaceable

    nodes = [{"CPU": 4.0, "GPU": 1.0, "memory": 1e9}, {"CPU": 2.0}]
    assert unplaceable({"CPU": 4.0, "GPU": 1.0}, nodes) is None  # exactly a node's totals fits
    assert unplaceable({"CPU": 2.0}, nodes) is None
    why = unplaceable({"CPU": 8.0, "GPU": 1.0}, nodes)
    assert why == "no node of the cluster can hold a model actor (8 CPU, 1 GPU): its nodes have 2 CPU, 0 GPU; 4 CPU, 1 GPU"
    assert "(1 CPU, 2 GPU)" in unplaceable({"CPU": 1.0, "GPU": 2.0}, nodes)  # two GPUs per actor on 1-GPU nodes
    assert "0 sr_node" in unplaceable({"CPU": 1.0, "sr_node": 1.0}, nodes)  # a custom resource nobody declares
    assert "nothing" in unplaceable({"CPU": 1.0}, [])


def _autoscaler_request() -> list[dict]:
    """What ``ray.autoscaler.sdk.request_resources`` last asked for (the v1 autoscaler's channel,
    which the session cluster uses)."""
    import json

    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    return json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL) or b"[]")


def test_the_wait_ends_when_a_node_that_fits_joins(ray_cluster):
    """An autoscaler's node: the wait asks the autoscaler for the actor's shape, returns once a node
    that fits has joined, and withdraws the request."""
    import threading
    import time

    from raysr.job.actors import wait_for_actor_node

    outcome = []

    def wait() -> None:
        try:
            wait_for_actor_node({"CPU": 1.0, "late_node": 1.0}, wait_s=120)  # only the node added below fits
            outcome.append(("returned", time.monotonic()))
        except Exception as error:  # noqa: BLE001 - reported below
            outcome.append((error, time.monotonic()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    assert not outcome, "returned before any node joined"
    assert _autoscaler_request() == [{"CPU": 1.0, "late_node": 1.0}], "the autoscaler was not asked for the node"
    joined_at = time.monotonic()
    node = ray_cluster.add_node(num_cpus=1, resources={"late_node": 1})  # Ray adds nodes from the main thread
    try:
        waiter.join(timeout=90)
        assert outcome and outcome[0][0] == "returned", outcome
        assert outcome[0][1] - joined_at < 60
        assert _autoscaler_request() == [], "the request outlived the wait and would keep a node up"
    finally:
        ray_cluster.remove_node(node)


def test_the_wait_gives_up_with_the_numbers_on_a_cluster_that_does_not_grow(ray_cluster):
    import time

    from raysr.job.actors import PlanError, wait_for_actor_node

    started = time.monotonic()
    with pytest.raises(PlanError, match=r"model actor \(4 CPU, 1 GPU\): its nodes have 3 CPU, 1 GPU, "
                                        r"and none joined in 1 s; lower resources.cpus_per_actor"):
        wait_for_actor_node({"CPU": 4.0, "GPU": 1.0}, wait_s=1)
    assert time.monotonic() - started < 10
    assert _autoscaler_request() == []


def test_without_a_wait_the_refusal_is_immediate(ray_cluster):
    from raysr.job.actors import PlanError, wait_for_actor_node

    with pytest.raises(PlanError, match=r"\(1 CPU, 2 GPU\): its nodes have 3 CPU, 1 GPU; lower resources"):
        wait_for_actor_node({"CPU": 1.0, "GPU": 2.0}, wait_s=0)
