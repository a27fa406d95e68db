"""The corpus time base and the per-frame ground-truth parameter columns (the analogue of the paper's
EMOCA/SPECTRE 3DMM expression + pose). Every stage that reads corpus params uses these names."""
from __future__ import annotations

from afcore.config import PAPER

FPS = PAPER.fps  # 25 video frames per second
SAMPLE_RATE = PAPER.sample_rate  # 16 kHz mono audio per person
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

# Head pose in radians, applied as roll @ pitch @ yaw about a pivot at the neck.
#   yaw   > 0: the face turns towards the viewer's right     (|yaw|   <= 0.5)
#   pitch > 0: the face tilts down (the first half of a nod)  (|pitch| <= 0.35)
#   roll  > 0: the head tilts clockwise in the image          (|roll|  <= 0.3)
POSE_COLUMNS = ("yaw", "pitch", "roll")
# Expression: jaw_open, smile, brow_raise, blink, laugh in [0, 1]; gaze_x, gaze_y in [-1, 1]
# (0, 0) = looking into the camera, i.e. at the partner; +x = viewer's right, +y = up.
EXPRESSION_COLUMNS = ("jaw_open", "smile", "brow_raise", "blink", "gaze_x", "gaze_y", "laugh")
PARAM_COLUMNS = EXPRESSION_COLUMNS + POSE_COLUMNS  # params arrays are (T, 10) float32 in this order
EXPRESSION_SLICE = slice(0, len(EXPRESSION_COLUMNS))
POSE_SLICE = slice(len(EXPRESSION_COLUMNS), len(PARAM_COLUMNS))
POSE_LIMITS = {"yaw": 0.5, "pitch": 0.35, "roll": 0.3}
# A change of an expression parameter (units of the [0, 1] scale) that a viewer sees: about a quarter of a corpus
# smile. Reaction delays are also given to the first change this large ("visible"), since a half-of-peak time moves
# with how long a reaction keeps growing.
VISIBLE_CHANGE = 0.1

# Vocal activity kinds in the turn annotations (each person's own track).
VOCAL_KINDS = ("speech", "backchannel", "laugh")
PERSONS = ("A", "B")
SPLITS = ("train", "val", "test")


def column_index(name: str) -> int:
    return PARAM_COLUMNS.index(name)
