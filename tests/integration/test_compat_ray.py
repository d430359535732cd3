"""sweeps/compat.py on a real Ray cluster: the private GCS placement-group table reader still returns the
groups of this job (sweeps/orphans.py depends on it); a Ray release that moves it fails here by name."""
import pytest

pytestmark = pytest.mark.integration


def test_placement_group_table_lists_a_new_group(ray_cluster):
    import ray
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import placement_group, remove_placement_group

    from sweeps.compat import placement_group_table

    pg = placement_group([{"CPU": 0.01}])
    ray.get(pg.ready(), timeout=60)
    try:
        rows = [gcs_pb2.PlacementGroupTableData.FromString(raw) for raw in placement_group_table()]
        mine = [r for r in rows if r.placement_group_id.hex() == pg.id.hex()]
        assert len(mine) == 1 and mine[0].state == gcs_pb2.PlacementGroupTableData.CREATED
        assert mine[0].creator_job_id.hex() == ray.get_runtime_context().get_job_id()
    finally:
        remove_placement_group(pg)
