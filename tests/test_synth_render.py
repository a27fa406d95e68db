"""The face renderer: shapes, anti-aliasing, pose that looks like pose, expressions that change the face."""
import numpy as np
import pytest

from data_prep.schema import PARAM_COLUMNS, column_index
from data_prep.synth.identity import sample_identity
from data_prep.synth.render import FaceRenderer


def _params(n=1, **values):
    p = np.zeros((n, len(PARAM_COLUMNS)), np.float32)
    for k, v in values.items():
        p[:, column_index(k)] = v
    return p


def _identity(seed=0, **want):
    """First sampled identity with the wanted appearance fields (e.g. light hair so pupils are the darkest)."""
    rng = np.random.default_rng(seed)
    for _ in range(500):
        ident = sample_identity("r", "train", rng)
        a = ident.appearance
        if all(f(getattr(a, k)) for k, f in want.items()):
            return ident
    raise AssertionError(f"no identity with {want}")


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shapes_dtype_and_determinism(size):
    r = FaceRenderer(_identity().appearance, size)
    params = np.concatenate([_params(), _params(jaw_open=0.8, yaw=0.3)])
    frames = r.render(params)
    assert frames.shape == (2, size, size, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, FaceRenderer(_identity().appearance, size).render(params))


def test_edges_are_antialiased():
    frame = FaceRenderer(_identity().appearance, 64).render(_params())[0]
    # a hard-edged drawing of ~25 flat colours would have ~25 distinct values; blended edges give many more
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 150


def test_yaw_moves_the_features_sideways_and_keeps_the_head():
    ident = _identity(hair=lambda c: sum(c) > 330, beard=lambda b: b == "none", glasses=lambda g: not g)
    r = FaceRenderer(ident.appearance, 128)
    frames = r.render(np.concatenate([_params(yaw=-0.4), _params(), _params(yaw=0.4)])).astype(int)
    centroid_x = []
    for f in frames:  # pupils and lash lines are the darkest pixels of a light-haired face
        _, xs = np.nonzero(f.sum(-1) < 150)
        centroid_x.append(xs.mean())
    assert centroid_x[0] + 4 < centroid_x[1] < centroid_x[2] - 4, centroid_x  # +yaw turns the face to the right
    background = r.render(_params())[0].astype(int)
    head_rows = slice(40, 90)  # the head outline barely moves: most of the frame outside the face is unchanged
    assert (np.abs(frames[2] - background)[head_rows].sum(-1) > 30).mean() < 0.35


def test_pitch_moves_the_features_vertically():
    ident = _identity(hair=lambda c: sum(c) > 330, beard=lambda b: b == "none", glasses=lambda g: not g)
    frames = FaceRenderer(ident.appearance, 128).render(np.concatenate([_params(pitch=-0.3), _params(pitch=0.3)])).astype(int)
    cy = [np.nonzero(f.sum(-1) < 150)[0].mean() for f in frames]
    assert cy[0] + 3 < cy[1]  # pitch > 0 tilts the face down


@pytest.mark.parametrize("column, region", [("jaw_open", (slice(80, 110), slice(44, 84))),
                                            ("blink", (slice(50, 75), slice(25, 103))),
                                            ("smile", (slice(50, 110), slice(20, 108))),  # Duchenne: cheeks and eyes too
                                            ("brow_raise", (slice(35, 65), slice(25, 103))),
                                            ("gaze_x", (slice(50, 75), slice(25, 103)))])
def test_each_expression_changes_its_own_region(column, region):
    r = FaceRenderer(_identity().appearance, 128)
    neutral, moved = r.render(np.concatenate([_params(), _params(**{column: 1.0})])).astype(int)
    diff = np.abs(moved - neutral).sum(-1)
    assert diff[region].sum() > 0.7 * diff.sum() > 0, column


def test_bad_input_is_rejected_with_a_clear_message():
    r = FaceRenderer(_identity().appearance, 64)
    with pytest.raises(ValueError, match=r"params must be \(T, 10\)"):
        r.render(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="size"):
        FaceRenderer(_identity().appearance, 16)


def test_identities_look_different():
    rng = np.random.default_rng(1)
    frames = [FaceRenderer(sample_identity(f"i{k}", "train", rng).appearance, 64).render(_params())[0] for k in range(6)]
    d = [np.abs(frames[i].astype(int) - frames[j]).mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(d) > 8
