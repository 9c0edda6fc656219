"""Parse a Label Studio label config into the one shape this backend serves: Choices on an Image."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from backend.errors import LabelConfigError

MAX_LABEL_CONFIG_CHARS = 1_000_000


@dataclass(frozen=True)
class ClassificationSpec:
    """What a prediction needs: control and object names, the image's data key, the label list."""

    from_name: str  # the Choices tag's name
    to_name: str  # the Image tag's name
    data_key: str  # task.data key holding the image URL ("image" for value="$image")
    labels: tuple[str, ...]  # class index -> label, in config order
    multi_label: bool  # Choices choice="multiple"

    @property
    def fingerprint(self) -> str:
        """Changes whenever the label list or its order changes (a trained head is tied to it)."""
        text = "\x1f".join((self.from_name, self.to_name, *self.labels, str(self.multi_label)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def label_index(self, label: str) -> int | None:
        try:
            return self.labels.index(label)
        except ValueError:
            return None


def parse_label_config(config: str) -> ClassificationSpec:
    """One Choices tag pointing at one Image tag; anything else raises LabelConfigError."""
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("the label config is empty")
    if len(config) > MAX_LABEL_CONFIG_CHARS:
        raise LabelConfigError(f"the label config has {len(config)} characters, more than {MAX_LABEL_CONFIG_CHARS}")
    if "<!DOCTYPE" in config or "<!ENTITY" in config:
        raise LabelConfigError("the label config must not declare a DOCTYPE or entities")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as error:
        raise LabelConfigError(f"the label config is not valid XML: {error}") from None

    # Control tags are the ones with toName; object tags carry value="$key".
    controls = [element for element in root.iter() if element.get("toName")]
    objects = {element.get("name"): element for element in root.iter() if (element.get("value") or "").startswith("$")}
    choices = [element for element in controls if element.tag == "Choices"]
    others = sorted(
        {f"<{element.tag} name={element.get('name')!r}>" for element in controls if element.tag != "Choices"}
    )
    if others:
        raise LabelConfigError(
            f"this backend classifies whole images with one <Choices> tag; remove the other control tags: "
            f"{', '.join(others)}"
        )
    if len(choices) != 1:
        raise LabelConfigError(f"the label config needs exactly one <Choices> tag, found {len(choices)}")
    control = choices[0]
    from_name = control.get("name") or ""
    to_name = control.get("toName") or ""
    if not from_name:
        raise LabelConfigError("the <Choices> tag has no name")
    if "," in to_name:
        raise LabelConfigError(f"<Choices name={from_name!r}> must point at one <Image>, not toName={to_name!r}")
    target = objects.get(to_name)
    if target is None or target.tag != "Image":
        found = "nothing" if target is None else f"<{target.tag}>"
        raise LabelConfigError(
            f"<Choices name={from_name!r}> must point at an <Image> tag; toName={to_name!r} is {found}"
        )
    labels = tuple(_choice_label(choice) for choice in control.iter("Choice"))
    if len(labels) < 2:
        raise LabelConfigError(f"<Choices name={from_name!r}> needs at least 2 <Choice> values, found {len(labels)}")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise LabelConfigError(f"<Choices name={from_name!r}> repeats the values {duplicates}")
    return ClassificationSpec(
        from_name=from_name,
        to_name=to_name,
        data_key=(target.get("value") or "")[1:],
        labels=labels,
        multi_label=control.get("choice") == "multiple",
    )


def _choice_label(choice: ET.Element) -> str:
    # Label Studio stores a Choice's alias in results when it has one.
    label = choice.get("alias") or choice.get("value")
    if not label:
        raise LabelConfigError("a <Choice> has no value")
    return label
