"""flatten op: harness over ranks, batch kept, no mask allowed."""
import numpy as np
import pytest

from graphmask.ops import Spec, get_op
from tests.ops.harness import check_op


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 1, 3, 2), (0, 2, 3)])
def test_harness(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    check_op("flatten", {}, {"x": x})
    y = get_op("flatten").forward({}, {"x": x})[0]
    np.testing.assert_array_equal(y, x.reshape(shape[0], int(np.prod(shape[1:]))))


def test_infer_and_mask_rule():
    op = get_op("flatten")
    assert op.infer({}, {"x": Spec((None, 3, 4), "float32")}) == [Spec((None, 12), "float32")]
    assert op.infer({}, {"x": Spec((None, None, 4), "float32")}) == [Spec((None, None),
                                                                          "float32")]
    assert not op.mask_rule({}).takes
