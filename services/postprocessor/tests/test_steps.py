import pytest
from csc_common.errors import InputError
from csc_postprocessor.steps import DEFAULTS, Step, load_recipes, parse_recipes


def test_defaults_per_kind():
    r = load_recipes(None)
    assert r.for_class("ecs", "semantic") == (Step("threshold", value=0.5),)
    assert [s.op for s in r.for_class("mito", "instance")] == ["threshold", "components"]
    assert r.defaults == DEFAULTS


def test_class_override_and_kind_default_from_yaml(tmp_path):
    f = tmp_path / "steps.yaml"
    f.write_text(
        "defaults:\n  semantic: [{op: threshold, value: 0.3}]\n"
        "classes:\n  mito: [{op: threshold}, {op: fill_holes}, {op: watershed, h_nm: 8},"
        " {op: remove_small, min_size_nm3: 1000}]\n"
    )
    r = load_recipes(str(f))
    assert r.for_class("er", "semantic")[0].value == 0.3
    assert [s.op for s in r.for_class("mito", "instance")] == ["threshold", "fill_holes", "watershed", "remove_small"]
    assert r.for_class("mito", "instance")[2].h_nm == 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"classes": {"mito": [{"op": "erode"}]}}, r"/classes/mito/0/op: 'erode' is not one of"),
        ({"classes": {"mito": [{"op": "threshold"}, {"op": "components", "connectivity": 8}]}}, "connectivity"),
        ({"classes": {"mito": [{"op": "threshold"}, {"op": "remove_small"}]}}, "min_size_nm3"),
        ({"classes": {"mito": [{"op": "threshold", "valeu": 0.5}]}}, "valeu"),
        ({"defaults": {"weird": []}}, "weird"),
    ],
)
def test_schema_errors_name_the_place(data, message):
    with pytest.raises(InputError, match=message):
        parse_recipes(data, "steps.yaml")


def test_order_is_checked_before_any_volume_is_read():
    with pytest.raises(InputError, match=r"/classes/mito step 1 'components': needs a mask.*put 'threshold' first"):
        parse_recipes({"classes": {"mito": [{"op": "components"}]}}, "steps.yaml")
    with pytest.raises(InputError, match="step 3 'fill_holes': needs a mask volume but gets labels"):
        parse_recipes({"classes": {"mito": [{"op": "threshold"}, {"op": "components"}, {"op": "fill_holes"}]}})


def test_missing_steps_file():
    with pytest.raises(InputError, match="steps file not found"):
        load_recipes("/nonexistent/steps.yaml")
