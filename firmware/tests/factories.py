from __future__ import annotations

import factory

from firmware.models import FirmwareImage
from firmware.services import firmware_image_create


class FirmwareImageFactory(factory.django.DjangoModelFactory):
    """Goes through `firmware_image_create`, so the image is hashed and signed."""

    class Meta:
        model = FirmwareImage

    firmware_line = "eb-meter"
    version = factory.Sequence(lambda n: f"2.{n}.0")
    image = factory.LazyAttribute(lambda o: f"image {o.firmware_line} {o.version}".encode() * 64)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return firmware_image_create(**kwargs)
