"""Face parameters of real video from dlib's 68 landmarks (weights ship in face-recognition-models).

Per frame: the largest face (HOG detector), 68 landmarks (iBUG 300-W order), then
* head pose (yaw, pitch, roll, radians, the corpus's conventions) by cv2.solvePnP of six landmarks on a
  generic 3D face, for a pinhole camera with focal length = image width;
* expression proxies, unitless, normalised by the inter-ocular distance (eye centres): mouth opening
  (inner lips), smile width (mouth corners), brow height (brow to eye centroids) and eye opening (the
  eye aspect ratio of Soukupova & Cech 2016).
These are proxies, not 3DMM coefficients: use them for the same metrics (rPCC, SID, Var) on real video,
never mixed with the corpus's parameters. `align_arcface` makes 112 px ArcFace crops from the landmarks.
"""
from __future__ import annotations

import numpy as np

from .common import make_card, package_dir, require_package

LANDMARK_COLUMNS = ("mouth_open", "smile_width", "brow_height", "eye_open", "yaw", "pitch", "roll")
WHY = "face parameters from dlib landmarks"

# Generic face, OpenCV camera axes (x right, y down, z away from the camera), arbitrary units (~0.1 mm):
# landmark index -> 3D point. The nose tip is the origin and the closest point to the camera.
GENERIC_FACE = {30: (0.0, 0.0, 0.0),  # nose tip
                8: (0.0, 330.0, 65.0),  # chin
                36: (-225.0, -170.0, 135.0), 45: (225.0, -170.0, 135.0),  # outer eye corners (image left, right)
                48: (-150.0, 150.0, 125.0), 54: (150.0, 150.0, 125.0)}  # mouth corners
PNP_INDICES = tuple(GENERIC_FACE)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])  # eyes, nose tip, mouth corners at 112 px
FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes <-> corpus axes (x right, y up, z to the camera)


def rotation_from_angles(yaw, pitch, roll) -> np.ndarray:
    """Corpus convention (data_prep.synth.render): R = Rz(roll) Rx(pitch) Ry(yaw), corpus axes."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def angles_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """Inverse of rotation_from_angles (|pitch| < pi/2): row 2 of Rz Rx Ry is (-cp sy, sp, cp cy)."""
    pitch = np.arcsin(np.clip(r[2, 1], -1, 1))
    return float(np.arctan2(-r[2, 0], r[2, 2])), float(pitch), float(np.arctan2(r[0, 1], r[1, 1]))


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(68, 2) landmarks in pixels, image (height, width) -> (yaw, pitch, roll) in radians."""
    cv2 = require_package("cv2", "'opencv-python-headless<5'", WHY)
    h, w = image_size
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
    obj = np.array([GENERIC_FACE[i] for i in PNP_INDICES], np.float64)
    img = np.asarray(landmarks, np.float64)[list(PNP_INDICES)]
    # start in front of the camera, facing it, so the iterative solver does not settle behind the camera
    rvec0, tvec0 = np.zeros((3, 1)), np.array([[0.0], [0.0], [w * 3.0]])
    ok, rvec, _ = cv2.solvePnP(obj, img, camera, np.zeros(4), rvec0, tvec0, useExtrinsicGuess=True,
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return (np.nan, np.nan, np.nan)
    r_cv = cv2.Rodrigues(rvec)[0]
    return angles_from_rotation(FLIP_YZ @ r_cv @ FLIP_YZ)


def expression_proxies(lm: np.ndarray) -> tuple[float, float, float, float]:
    """(68, 2) -> mouth_open, smile_width, brow_height, eye_open (inter-ocular-distance units, EAR)."""
    lm = np.asarray(lm, np.float64)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    iod = np.linalg.norm(eye_r - eye_l)
    d = lambda a, b: np.linalg.norm(lm[a] - lm[b])
    mouth_open = (d(61, 67) + d(62, 66) + d(63, 65)) / 3 / iod
    smile_width = d(48, 54) / iod
    brow_height = (np.linalg.norm(lm[17:22].mean(0) - eye_l) + np.linalg.norm(lm[22:27].mean(0) - eye_r)) / 2 / iod
    ear = lambda e: (d(e + 1, e + 5) + d(e + 2, e + 4)) / (2 * d(e, e + 3))
    return float(mouth_open), float(smile_width), float(brow_height), float((ear(36) + ear(42)) / 2)


def align_arcface(image: np.ndarray, lm: np.ndarray, size: int = 112) -> np.ndarray:
    """Similarity-warp a face to the ArcFace 5-point template -> (size, size, 3) uint8."""
    from skimage.transform import SimilarityTransform, warp

    lm = np.asarray(lm, np.float64)
    src = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    tf = SimilarityTransform.from_estimate(ARCFACE_TEMPLATE * size / 112, src) \
        if hasattr(SimilarityTransform, "from_estimate") else None
    if tf is None:
        tf = SimilarityTransform()
        tf.estimate(ARCFACE_TEMPLATE * size / 112, src)
    out = warp(np.asarray(image), tf, output_shape=(size, size), preserve_range=True)  # output -> input map
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class LandmarkFaceParams:
    """Callable: frames (N, H, W, 3) uint8 RGB -> (N, 7) float32 in LANDMARK_COLUMNS (NaN rows: no face).
    `.landmarks(frames)` gives the (N, 68, 2) points."""
    columns = LANDMARK_COLUMNS

    def __init__(self, upsample: int = 1):
        self.dlib = require_package("dlib", "dlib-bin==20.0.1.post1", WHY)
        require_package("cv2", "'opencv-python-headless<5'", WHY)
        model = package_dir("face_recognition_models", "face-recognition-models==0.3.0", WHY) / "models" / \
            "shape_predictor_68_face_landmarks.dat"
        self.detector, self.predictor = self.dlib.get_frontal_face_detector(), self.dlib.shape_predictor(str(model))
        self.upsample = upsample
        self.card = make_card("dlib68-pnp-v1", "real", source=model,
                              notes="dlib HOG detector + 68-point shape predictor (iBUG 300-W); pose by solvePnP "
                                    "on a 6-point generic face; expression proxies in inter-ocular units")

    def landmarks(self, frames) -> np.ndarray:
        out = np.full((len(frames), 68, 2), np.nan)
        for i, img in enumerate(frames):
            img = np.ascontiguousarray(img)
            faces = self.detector(img, self.upsample)
            if faces:
                shape = self.predictor(img, max(faces, key=lambda r: r.area()))
                out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def __call__(self, frames) -> np.ndarray:
        frames = np.asarray(frames)
        out = np.full((len(frames), len(LANDMARK_COLUMNS)), np.nan, np.float32)
        for i, lm in enumerate(self.landmarks(frames)):
            if np.isfinite(lm).all():
                out[i] = expression_proxies(lm) + head_pose(lm, frames.shape[1:3])
        return out


def interpolate_missing(params: np.ndarray, max_gap: int = 12) -> np.ndarray:
    """Fill NaN rows (frames without a detected face) by linear interpolation over time, so the (T, d)
    series can go to eval.metrics; gaps longer than `max_gap` frames (0.5 s) stay NaN and the metrics will
    refuse them (cut the clip there instead)."""
    p = np.array(params, dtype=np.float64)
    bad = ~np.isfinite(p).all(1)
    if bad.all():
        raise ValueError("no frame of this clip has a face: nothing to interpolate from")
    t, good = np.arange(len(p)), np.flatnonzero(~bad)
    filled = np.stack([np.interp(t, good, p[good, j]) for j in range(p.shape[1])], 1)
    run_start = None
    for i in range(len(p) + 1):  # keep long gaps (and gaps at the ends longer than max_gap) missing
        if i < len(p) and bad[i]:
            run_start = i if run_start is None else run_start
        elif run_start is not None:
            if i - run_start > max_gap:
                filled[run_start:i] = np.nan
            run_start = None
    return filled.astype(np.float32)
