"""recordpatch.tuples.named: the namedtuple behaviour the package relies on."""

from __future__ import annotations

import pickle

import pytest

from recordpatch.results import FileReport
from recordpatch.tuples import named

Point = named("Point", "x y z", defaults=(0,))


class Sub(named("Sub", "a b")):
    __slots__ = ()

    @property
    def total(self):
        return self.a + self.b


def test_construction_and_access():
    p = Point(1, 2)
    assert p == (1, 2, 0) and p.x == 1 and p.y == 2 and p.z == 0
    assert Point(1, y=2, z=3) == Point(x=1, y=2, z=3) == (1, 2, 3)
    assert Point._make([4, 5, 6]).z == 6
    assert p._replace(z=9) == (1, 2, 9) and p == (1, 2, 0)
    assert p._asdict() == {"x": 1, "y": 2, "z": 0}
    assert Point._fields == ("x", "y", "z") and Point._field_defaults == {"z": 0}
    assert repr(p) == "Point(x=1, y=2, z=0)"
    assert hash(p) == hash((1, 2, 0)) and p < Point(1, 3)
    assert Sub(1, 2).total == 3 and repr(Sub(1, 2)) == "Sub(a=1, b=2)"
    with pytest.raises(AttributeError):
        p.x = 5
    with pytest.raises(AttributeError):
        Sub(1, 2).c = 1   # __slots__: no instance dict


@pytest.mark.parametrize("call", [lambda: Point(1), lambda: Point(1, 2, 3, 4),
                                  lambda: Point(1, 2, x=3), lambda: Point(1, 2, w=3),
                                  lambda: Point._make([1, 2])])
def test_bad_arguments(call):
    with pytest.raises(TypeError):
        call()


def test_replace_rejects_unknown_fields():
    with pytest.raises(ValueError):
        Point(1, 2)._replace(w=1)


def test_pickles_by_module_and_name():
    """multiprocessing (-j) sends results back pickled."""
    r = FileReport("a.o", "recorded", [], {"sites": 3})
    back = pickle.loads(pickle.dumps(r))
    assert back == r and type(back) is FileReport
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
