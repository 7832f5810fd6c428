"""A drone JPEG whose EXIF GPS position is malformed is refused with a reason (PhotoError),
never an exception that would take a whole batch run down."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from ingest.batch import photos


def _jpeg(latitude) -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitude] = latitude
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("latitude, why", [
    ((30.0, 15.0), "is not degrees, minutes, seconds"),
    ((TiffImagePlugin.IFDRational(30, 0), 15.0, 0.0), "is not a number"),
])
def test_malformed_gps_position_is_a_photo_error(latitude, why):
    with pytest.raises(photos.PhotoError, match=why):
        photos.read_meta(_jpeg(latitude))


def test_well_formed_gps_position_is_read():
    meta = photos.read_meta(_jpeg((30.0, 15.0, 36.0)))
    assert meta.lat == pytest.approx(30.26)


def test_a_focal_length_that_is_not_a_number_is_a_photo_error():
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = "wide"
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "JPEG", exif=exif)
    with pytest.raises(photos.PhotoError, match="FocalLengthIn35mmFilm"):
        photos.read_meta(buf.getvalue())
