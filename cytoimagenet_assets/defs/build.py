"""Build the whole asset graph headless, recording every run in the Dagster instance
(``DAGSTER_HOME``), so that ``dagster dev`` on the same instance shows them.

    python -m cytoimagenet_assets.defs.build

First everything that does not depend on the class images (sources, tables, class table) in one
run; then one run per class partition of ``class_images`` — each class has its own status and
error, as the sensor would launch them; then everything downstream of the class images. A class
that fails does not stop the others; the exit status says whether all succeeded.
"""

import sys
import time

import dagster as dg

from cytoimagenet_assets.defs.images import CLASS_IMAGES_KEY
from cytoimagenet_assets.defs.labels import CLASS_PARTITIONS


def build_all(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> bool:
    everything = [*defs.assets, *defs.asset_checks]
    images = dg.AssetSelection.assets(CLASS_IMAGES_KEY)
    downstream = images.downstream() - images
    upstream = dg.AssetSelection.all() - images - downstream

    def run(selection, **kwargs) -> bool:
        return dg.materialize(everything, resources=defs.resources, instance=instance, selection=selection,
                              raise_on_error=False, tags={"cytoimagenet/launched_by": "build"}, **kwargs).success

    started = time.perf_counter()
    if not run(upstream):
        log("the tables upstream of the class images failed; see the run in the UI")
        return False
    keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
    failed = [key for key in keys if not run(images, partition_key=key)]
    log(f"class images: {len(keys) - len(failed)} of {len(keys)} classes built" + (f"; failed: {', '.join(failed)}" if failed else ""))
    ok = run(downstream) and not failed
    log(f"{'built' if ok else 'finished with failures'} in {time.perf_counter() - started:.0f} s")
    return ok


def main() -> int:
    from cytoimagenet_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        return 0 if build_all(defs, instance) else 1


if __name__ == "__main__":
    sys.exit(main())
