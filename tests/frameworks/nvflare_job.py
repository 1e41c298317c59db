"""An NVFlare simulator job (two sites) whose server logs through SynergosReceiver.

python nvflare_job.py TRACKING_URI COLLABORATION RUN WORKSPACE
"""

from __future__ import annotations

import sys
from pathlib import Path

from nvflare.app_common.np.recipes import NumpyFedAvgRecipe
from nvflare.recipe import SimEnv

from synergos_mlops.integrations.nvflare import add_synergos_tracking

ROUNDS = 3


def main() -> None:
    tracking_uri, collaboration, run, workspace = sys.argv[1:5]
    recipe = NumpyFedAvgRecipe(
        name="linear",
        model=[0.0, 0.0],
        min_clients=2,
        num_rounds=ROUNDS,
        train_script=str(Path(__file__).with_name("nvflare_client.py")),
    )
    add_synergos_tracking(recipe, tracking_uri, collaboration, "nvflare", "linear", run)
    result = recipe.run(SimEnv(num_clients=2, workspace_root=workspace))
    print("status:", result.get_status())
    print("result:", result.get_result())


if __name__ == "__main__":
    main()
