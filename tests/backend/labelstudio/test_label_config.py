"""Label configs: the one supported shape parses to an exact spec; everything else names its fault."""

from __future__ import annotations

import pytest

from backend.errors import LabelConfigError
from backend.labelstudio.label_config import ClassificationSpec, parse_label_config


def config(choices: str, *, extra: str = "", attributes: str = "", to_name: str = "image") -> str:
    return (
        '<View><Image name="image" value="$image"/>'
        f'<Choices name="choice" toName="{to_name}"{attributes}>{choices}</Choices>{extra}</View>'
    )


CAT_DOG = '<Choice value="Cat"/><Choice value="Dog"/>'


def test_single_choice_config_gives_the_exact_spec() -> None:
    spec = parse_label_config(config(CAT_DOG + '<Choice value="Bird"/>'))

    assert spec == ClassificationSpec(
        from_name="choice", to_name="image", data_key="image", labels=("Cat", "Dog", "Bird"), multi_label=False
    )


def test_data_key_is_the_image_value_without_the_dollar() -> None:
    spec = parse_label_config(
        f'<View><Image name="img" value="$photo_url"/><Choices name="kind" toName="img">{CAT_DOG}</Choices></View>'
    )

    assert (spec.from_name, spec.to_name, spec.data_key) == ("kind", "img", "photo_url")


def test_choice_multiple_makes_the_spec_multi_label() -> None:
    spec = parse_label_config(config(CAT_DOG, attributes=' choice="multiple"'))

    assert spec.multi_label is True
    assert spec.labels == ("Cat", "Dog")


def test_alias_is_the_label_when_a_choice_has_one() -> None:
    spec = parse_label_config(config('<Choice value="Cat" alias="cat"/><Choice value="Dog"/>'))

    assert spec.labels == ("cat", "Dog")


def test_label_index_is_the_config_position_and_none_for_unknown_labels() -> None:
    spec = parse_label_config(config(CAT_DOG))

    assert [spec.label_index("Dog"), spec.label_index("Cat"), spec.label_index("Horse")] == [1, 0, None]


@pytest.mark.parametrize(
    ("label_config", "message"),
    [
        (
            config(CAT_DOG, extra=f'<Choices name="second" toName="image">{CAT_DOG}</Choices>'),
            "the label config needs exactly one <Choices> tag, found 2",
        ),
        (
            config(CAT_DOG, extra='<Labels name="box" toName="image"><Label value="Cat"/></Labels>'),
            "this backend classifies whole images with one <Choices> tag; "
            "remove the other control tags: <Labels name='box'>",
        ),
        (
            config(CAT_DOG, extra='<TextArea name="notes" toName="image"/>'),
            "this backend classifies whole images with one <Choices> tag; "
            "remove the other control tags: <TextArea name='notes'>",
        ),
        (
            f'<View><Text name="text" value="$text"/><Choices name="choice" toName="text">{CAT_DOG}</Choices></View>',
            "<Choices name='choice'> must point at an <Image> tag; toName='text' is <Text>",
        ),
        (
            config(CAT_DOG, to_name="picture"),
            "<Choices name='choice'> must point at an <Image> tag; toName='picture' is nothing",
        ),
        (
            config('<Choice value="Cat"/>'),
            "<Choices name='choice'> needs at least 2 <Choice> values, found 1",
        ),
        (
            config(CAT_DOG + '<Choice value="Cat"/>'),
            "<Choices name='choice'> repeats the values ['Cat']",
        ),
        ("", "the label config is empty"),
        ("  \n ", "the label config is empty"),
        (
            '<!DOCTYPE View [<!ENTITY cat "Cat">]>' + config('<Choice value="&cat;"/><Choice value="Dog"/>'),
            "the label config must not declare a DOCTYPE or entities",
        ),
    ],
    ids=[
        "two-choices",
        "labels-control",
        "textarea-control",
        "choices-on-text",
        "choices-on-missing-object",
        "one-choice",
        "duplicate-values",
        "empty",
        "blank",
        "doctype-entity",
    ],
)
def test_unsupported_config_raises_label_config_error_naming_the_fault(label_config: str, message: str) -> None:
    with pytest.raises(LabelConfigError) as raised:
        parse_label_config(label_config)

    assert str(raised.value) == message


def test_config_that_is_not_xml_raises_label_config_error() -> None:
    with pytest.raises(LabelConfigError, match=r"^the label config is not valid XML: "):
        parse_label_config('<View><Image name="image" value="$image"></View>')


def test_fingerprint_is_equal_for_the_same_config() -> None:
    assert parse_label_config(config(CAT_DOG)).fingerprint == parse_label_config(config(CAT_DOG)).fingerprint


def test_fingerprint_changes_when_label_order_changes() -> None:
    dog_cat = '<Choice value="Dog"/><Choice value="Cat"/>'

    assert parse_label_config(config(CAT_DOG)).fingerprint != parse_label_config(config(dog_cat)).fingerprint


def test_fingerprint_changes_when_single_choice_becomes_multiple() -> None:
    single = parse_label_config(config(CAT_DOG))
    multiple = parse_label_config(config(CAT_DOG, attributes=' choice="multiple"'))

    assert single.fingerprint != multiple.fingerprint
