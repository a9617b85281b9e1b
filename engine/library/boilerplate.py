"""Text that cameras, phones and programs put in a photo's description by themselves.

Nobody typed it, so it is no one's description: Loupe treats it as empty in every place it
reads a description (XMP dc:description, IPTC Caption-Abstract, EXIF ImageDescription, PNG
text `Description`) and may write its caption there. Two kinds:

  * exact strings (BOILERPLATE, each with where it comes from), compared case-insensitively
    with runs of whitespace as one space;
  * camera names and model numbers (`is_camera_name`): text made only of maker and series
    names, words like "digital camera", and model numbers, with at least two of those kinds
    ("KENOX S1050", "<KENOX S1050  / Samsung S1050>", "Canon EOS 5D", "iPhone 12 Pro Max").

A short description a person wrote is kept: a name ("Grandma", "Max"), a place ("Olympus"
alone, the mountain), one ordinary word ("beach"), a number ("A380"). That is why phone scene codes ("hdr", "smart") are
exact entries, never a pattern like "one short lowercase word".
"""
from __future__ import annotations

import re

# (text, where it comes from). Sources are public: PhotoPrism's
# internal/meta/sanitize.go `UnwantedDescriptions`, Logitech Media Server's note that old
# cameras put their own name in ImageDescription (the reason for `is_camera_name`), camera
# defaults Loupe already knew, and the strings reported from real collections in issue 20.
_PHOTOPRISM = "PhotoPrism internal/meta/sanitize.go UnwantedDescriptions"
_ISSUE20 = "Loupe issue 20 (found in real phone and camera collections)"
_KNOWN = "camera firmware default (Loupe's list before issue 20)"
# Logitech Media Server skips ImageDescription because "older digicams" stored their name there
_LMS = "LMS-Community/slimserver Slim/Schema/Image.pm (\"MEDION DIGITAL CAMERA\" etc.)"
SOURCES: tuple[tuple[str, str], ...] = (
    # Olympus, Sony, Minolta, Kodak, Pentax, Samsung, Medion firmware
    ("OLYMPUS DIGITAL CAMERA", _PHOTOPRISM),
    ("SAMSUNG", _PHOTOPRISM),
    ("SONY DSC", _KNOWN),
    ("DIGITAL CAMERA", _KNOWN),
    ("MINOLTA DIGITAL CAMERA", _KNOWN),
    ("KONICA MINOLTA DIGITAL CAMERA", _KNOWN),
    ("KODAK DIGITAL STILL CAMERA", _KNOWN),
    ("PENTAX DIGITAL CAMERA", _KNOWN),
    ("SAMSUNG CAMERA PICTURES", _KNOWN),
    ("SAMSUNG DIGITAL CAMERA", _KNOWN),
    ("MEDION DIGITAL CAMERA", f"{_ISSUE20}; {_LMS}"),
    ("EXIF_JPEG_PICTURE", _KNOWN),
    # phones: scene / HDR mode codes (Huawei and others), greetings
    ("rhdr", _PHOTOPRISM), ("hdrpl", _PHOTOPRISM), ("oznorWO", _PHOTOPRISM),
    ("frontbhdp", _PHOTOPRISM), ("fbt", _PHOTOPRISM), ("mon", _PHOTOPRISM),
    ("nor", _PHOTOPRISM), ("dav", _PHOTOPRISM), ("mde", _PHOTOPRISM),
    ("mde_soft", _PHOTOPRISM), ("edf", _PHOTOPRISM), ("btfmdn", _PHOTOPRISM),
    ("btf", _PHOTOPRISM), ("btfhdr", _PHOTOPRISM), ("frem", _PHOTOPRISM),
    ("oznor", _PHOTOPRISM), ("rpt", _PHOTOPRISM), ("burst", _PHOTOPRISM),
    ("sdr_HDRB", _PHOTOPRISM), ("cof", _PHOTOPRISM), ("qrf", _PHOTOPRISM),
    ("_cuva", _ISSUE20), ("hdr", _ISSUE20), ("smart", _ISSUE20),
    ("HELLOMOTO", _ISSUE20), ("My beautiful picture", _ISSUE20),
    # programs
    ("Created with GIMP", _KNOWN),
    ("LEAD Technologies Inc. V1.01", _KNOWN),
)

_SPACES = re.compile(r"\s+")


def _key(text: str) -> str:
    return _SPACES.sub(" ", text.strip(" \t\r\n\x00")).casefold()


BOILERPLATE = frozenset(_key(text) for text, _source in SOURCES)

# Makers and their series names, as cameras write them in ImageDescription (LMS, above: "older
# digicams" stored their name there).
_BRANDS = frozenset(w.casefold() for w in (
    "Agfa", "AgfaPhoto", "Apple", "BenQ", "Canon", "Casio", "Concord", "DJI", "Epson", "Fuji",
    "Fujifilm", "GE", "GoPro", "HP", "HTC", "Huawei", "Kenox", "Kodak", "Konica", "Kyocera",
    "Leica", "LG", "Medion", "Minolta", "Motorola", "Nikon", "Nokia", "Olympus", "OnePlus",
    "Panasonic", "Pentax", "Polaroid", "Praktica", "Ricoh", "Rollei", "Samsung", "Sanyo",
    "Sigma", "Sony", "Toshiba", "Vivitar", "Xiaomi", "Yashica", "Ericsson", "SonyEricsson",
    # series
    "EOS", "PowerShot", "IXUS", "IXY", "Coolpix", "Cyber-shot", "Cybershot", "Lumix",
    "FinePix", "Exilim", "EasyShare", "Optio", "Dimage", "Galaxy", "iPhone", "Pixel", "Lumia",
    "Alpha", "Mavic", "Hero", "Digimax", "Stylus", "Camedia",
))
# Words that say "a camera made this", with a maker or a model number beside them.
_CAMERA_WORDS = frozenset(("digital", "camera", "still", "pictures", "picture", "photo", "image",
                           "dsc", "mobile", "phone", "pro", "max", "mini", "plus", "ultra", "zoom"))
# A model number: letters and digits (at least one digit), optionally with - or .
_MODEL = re.compile(r"(?=[a-z\-.]*\d)[a-z0-9][a-z0-9\-.]{0,14}")
_SEPARATORS = re.compile(r"[<>/,;()\[\]]+")


def is_camera_name(text: str) -> bool:
    """True when `text` is only a camera's name: maker/series names, camera words and model
    numbers, and at least two of those three kinds ("KENOX S1050", "Canon EOS 5D", "MEDION
    DIGITAL CAMERA", "<KENOX S1050  / Samsung S1050>"). One kind alone is a person's word: a
    maker ("Olympus", the mountain), a camera word ("Max", "Mini", "mobile phone"), a number
    ("A380"). A description with any other word is a person's."""
    tokens = _SEPARATORS.sub(" ", _key(text)).split()
    kinds: set[str] = set()
    for token in tokens:
        if token in _BRANDS:
            kinds.add("maker")
        elif token in _CAMERA_WORDS:
            kinds.add("word")
        elif _MODEL.fullmatch(token):
            kinds.add("model")
        else:
            return False
    return len(kinds) >= 2


# File names and DCIM paths put in the description (PhotoPrism drops "DCIM\..." too); at
# least three digits, so "P1" or "IMG 2" stay a person's.
_GENERATED = re.compile(
    r"(dcim[\\/]\S*|(img|dsc|dscn|dscf|dsci|pict|cimg|sam|dji|pxl|mvimg|imag|p)[_-]?\d{3,}[\d_]*(\.[a-z0-9]{2,4})?)"
)


def is_boilerplate(text: str) -> bool:
    """True for empty text, the exact strings in BOILERPLATE, a camera's name and model
    (`is_camera_name`), and a bare file name or DCIM path ("IMG_1234.JPG", "DCIM\\100OLYMP")."""
    key = _key(text)
    return not key or key in BOILERPLATE or is_camera_name(key) or bool(_GENERATED.fullmatch(key))
