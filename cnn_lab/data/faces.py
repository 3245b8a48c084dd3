"""`faces`: procedural faces of fixed identities, for metric learning.

An identity is a fixed set of facial parameters drawn once from its own seed: face
width, length and chin, skin tone, hair colour, style and volume, ear size, eye
spacing, height, size and iris colour, brow thickness and slant, nose length and
width, mouth width and lip colour, and whether the person wears glasses or a beard.
Every image of an identity redraws what a photograph varies: pose (in-plane
rotation, a turn of the head that shifts the features sideways and narrows the face),
scale and position, expression (smile or frown, eye opening, raised brows), lighting
(brightness and a directional gradient), the background, and sensor noise.

Each example: `image` uint8 `[S, S, 3]`, `label` the identity (int). The splits hold
disjoint identities, so verification and one-shot recognition are measured on people
the network never saw:
  train       identities 0..499, 12 images each
  validation  identities 500..599, 6 images each (thresholds are chosen here)
  test        identities 600..799, 6 images each
Every image is drawn from `numpy.random.default_rng((seed, split, index))` and every
identity from `default_rng((seed, IDENTITY_STREAM, identity))`, so the dataset
prepares identically anywhere, offline. Faces are drawn at twice the size and
downsampled (anti-aliased).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from cnn_lab.data.features import pixels
from cnn_lab.data.shapes import background

SPLITS = {"train": (0, 500, 12), "validation": (500, 100, 6), "test": (600, 200, 6)}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
IDENTITY_STREAM = 7
NUM_IDENTITIES = 800

SKIN = [(255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 96), (160, 105, 70),
        (120, 78, 52), (88, 58, 40), (250, 210, 180)]
HAIR = [(20, 16, 14), (60, 40, 25), (110, 75, 40), (190, 150, 90), (230, 200, 130),
        (150, 60, 30), (160, 160, 160), (235, 235, 230), (40, 60, 140), (120, 40, 110)]
IRIS = [(70, 45, 20), (40, 90, 170), (60, 120, 60), (110, 110, 120), (20, 20, 20)]


@dataclasses.dataclass(frozen=True)
class Identity:
  """What stays fixed for a person (fractions of the canvas unless stated)."""
  face_w: float  # half-width of the face
  face_h: float  # half-length
  chin: float  # 0 round .. 1 pointed
  skin: tuple
  hair: tuple
  hair_style: int  # 0 short, 1 long, 2 bald, 3 fringe, 4 tall
  hair_volume: float
  ear: float
  eye_spacing: float  # half the distance between the eyes, fraction of face_w
  eye_height: float  # above the face centre, fraction of face_h
  eye_size: float
  iris: tuple
  brow_width: int  # pixels at twice the size
  brow_slant: float  # radians
  nose_length: float  # fraction of face_h
  nose_width: float  # fraction of face_w
  mouth_width: float  # fraction of face_w
  lips: tuple
  glasses: bool
  beard: bool


def identity(seed: int, person: int) -> Identity:
  rng = np.random.default_rng((seed, IDENTITY_STREAM, person))
  jitter = lambda colour, amount: tuple(int(np.clip(c + rng.normal(0, amount), 0, 255))
                                        for c in colour)
  skin = jitter(SKIN[rng.integers(len(SKIN))], 8)
  face_w = rng.uniform(0.22, 0.3)
  return Identity(
      face_w=face_w, face_h=face_w * rng.uniform(1.15, 1.45), chin=rng.uniform(0, 1),
      skin=skin, hair=jitter(HAIR[rng.integers(len(HAIR))], 10),
      hair_style=int(rng.integers(5)), hair_volume=rng.uniform(0.3, 1.0),
      ear=rng.uniform(0.04, 0.07), eye_spacing=rng.uniform(0.3, 0.5),
      eye_height=rng.uniform(0.0, 0.25), eye_size=rng.uniform(0.035, 0.06),
      iris=jitter(IRIS[rng.integers(len(IRIS))], 10), brow_width=int(rng.integers(2, 6)),
      brow_slant=rng.uniform(-0.35, 0.35), nose_length=rng.uniform(0.2, 0.45),
      nose_width=rng.uniform(0.12, 0.3), mouth_width=rng.uniform(0.3, 0.65),
      lips=tuple(int(c * f) for c, f in zip(skin, (0.85, 0.55, 0.55))),
      glasses=bool(rng.uniform() < 0.2), beard=bool(rng.uniform() < 0.2))


def _face_outline(cx, cy, w, h, chin, n=48):
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  x, y = np.sin(t), -np.cos(t)  # from the top, clockwise
  lower = y > 0
  x = np.where(lower, x * (1 - 0.35 * chin * y ** 2), x)  # narrower towards a pointed chin
  return [(cx + w * a, cy + h * b) for a, b in zip(x, y)]


def _draw_head(d, p: Identity, cx: float, cy: float, w: float, h: float, shift: float,
               canvas: int) -> None:
  """Hair behind, ears, the face, the hair cap and a beard."""
  hair = p.hair + (255,)
  if p.hair_style == 1:  # long: behind the face, down to the jaw
    d.rounded_rectangle([cx - w * 1.25, cy - h * 1.2, cx + w * 1.25, cy + h * 0.9],
                        radius=w * 0.6, fill=hair)
  ear_r = p.ear * canvas
  for side in (-1, 1):
    ex = cx + side * w * 0.98 + shift * 0.3
    d.ellipse([ex - ear_r * 0.6, cy - ear_r, ex + ear_r * 0.6, cy + ear_r],
              fill=p.skin + (255,))
  d.polygon(_face_outline(cx, cy, w, h, p.chin), fill=p.skin + (255,))
  if p.hair_style != 2:  # a cap of hair over the forehead
    top = h * (1.05 + 0.25 * p.hair_volume * (2.0 if p.hair_style == 4 else 1.0))
    low = cy - h * (0.35 if p.hair_style == 3 else 0.55)
    d.chord([cx - w * 1.08, cy - top, cx + w * 1.08, 2 * low - (cy - top)], 180, 360,
            fill=hair)  # the upper half of an ellipse from cy - top down to `low`
  if p.beard:
    d.chord([cx - w * 0.85 + shift, cy + h * 0.1, cx + w * 0.85 + shift, cy + h * 1.02],
            0, 180, fill=tuple(int(c * 0.8) for c in p.hair) + (255,))


def _draw_eyes(d, p: Identity, cx: float, ey: float, er: float, w: float, shift: float,
               open_eyes: float, raise_brows: float) -> None:
  """Eyes (white, iris, pupil), brows and glasses at height `ey`, radius `er`."""
  for side in (-1, 1):
    ex = cx + side * p.eye_spacing * w + shift
    d.ellipse([ex - er * 1.3, ey - er * open_eyes, ex + er * 1.3, ey + er * open_eyes],
              fill=(250, 250, 250, 255))
    ir = er * 0.75
    d.ellipse([ex - ir, ey - min(ir, er * open_eyes), ex + ir, ey + min(ir, er * open_eyes)],
              fill=p.iris + (255,))
    d.ellipse([ex - ir * 0.4, ey - ir * 0.4, ex + ir * 0.4, ey + ir * 0.4],
              fill=(10, 10, 10, 255))
    by = ey - er * (1.6 + 0.8 * raise_brows)
    slant = side * p.brow_slant
    bx0, bx1 = ex - er * 1.5, ex + er * 1.5
    d.line([(bx0, by + slant * er * 1.5 * -side), (bx1, by - slant * er * 1.5 * -side)],
           fill=tuple(int(c * 0.7) for c in p.hair) + (255,), width=p.brow_width)
    if p.glasses:
      g = er * 2.0
      d.ellipse([ex - g, ey - g * 0.8, ex + g, ey + g * 0.8], outline=(30, 30, 30, 255),
                width=2)
  if p.glasses:
    d.line([(cx - p.eye_spacing * w + er * 2 + shift, ey),
            (cx + p.eye_spacing * w - er * 2 + shift, ey)], fill=(30, 30, 30, 255), width=2)


def _draw_nose_and_mouth(d, p: Identity, cx: float, cy: float, w: float, h: float,
                         shift: float, nose_top: float, smile: float) -> None:
  nose_len = p.nose_length * h
  nw = p.nose_width * w
  nose_x = cx + shift * 1.3
  shade = tuple(int(c * 0.78) for c in p.skin) + (255,)
  d.polygon([(nose_x, nose_top), (nose_x - nw / 2, nose_top + nose_len),
             (nose_x + nw / 2, nose_top + nose_len)], fill=shade)
  my = nose_top + nose_len + (h - (nose_top + nose_len - cy)) * 0.35
  mw = p.mouth_width * w
  curve = abs(smile) * h * 0.12 + 1.0
  box = [nose_x - mw / 2, my - curve, nose_x + mw / 2, my + curve]
  lips = p.lips + (255,)
  if smile >= 0:  # corners up: the lower half of an ellipse
    d.chord(box, 0, 180, fill=lips)
  else:
    d.chord([box[0], my, box[2], my + 2 * curve], 180, 360, fill=lips)


def _draw_face(p: Identity, canvas: int, rng: np.random.Generator) -> Image.Image:
  """One identity's face, expression and head turn on a transparent `canvas` layer."""
  layer = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
  d = ImageDraw.Draw(layer)
  cx = cy = canvas / 2
  turn = rng.uniform(-0.12, 0.12)  # a head turn: features slide, the face narrows
  w, h = p.face_w * canvas * (1 - 0.6 * abs(turn)), p.face_h * canvas
  shift = turn * w * 1.2
  smile, open_eyes, raise_brows = rng.uniform(-1, 1), rng.uniform(0.35, 1.0), rng.uniform(0, 1)
  _draw_head(d, p, cx, cy, w, h, shift, canvas)
  ey, er = cy - p.eye_height * h, p.eye_size * canvas
  _draw_eyes(d, p, cx, ey, er, w, shift, open_eyes, raise_brows)
  _draw_nose_and_mouth(d, p, cx, cy, w, h, shift, ey + er, smile)
  return layer


def render(rng: np.random.Generator, person: Identity, size: int) -> np.ndarray:
  """One photograph of `person`: uint8 `[size, size, 3]` (see the module docstring)."""
  canvas = 2 * size
  base = Image.fromarray(background(rng, canvas).astype(np.uint8)).convert("RGBA")
  face = _draw_face(person, canvas, rng)
  scale = rng.uniform(0.85, 1.15)
  face = face.rotate(rng.uniform(-15, 15), resample=Image.BICUBIC, center=(size, size))
  side = max(1, int(round(canvas * scale)))
  face = face.resize((side, side), Image.BICUBIC)
  dx, dy = (rng.uniform(-0.07, 0.07, 2) * canvas).astype(int)
  base.alpha_composite(face, (int((canvas - side) / 2) + dx, int((canvas - side) / 2) + dy)
                       if side <= canvas else (0, 0))
  image = np.asarray(base.convert("RGB").resize((size, size), Image.LANCZOS), np.float64)
  yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
  angle = rng.uniform(0, 2 * np.pi)
  light = rng.uniform(0.7, 1.25) * (1 + rng.uniform(0, 0.5) *
                                    (np.cos(angle) * xx + np.sin(angle) * yy))
  image = image * light[..., None] + rng.normal(0, rng.uniform(0, 10), image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class FacesConfig(tfds.core.BuilderConfig):
  size: int = 64
  seed: int = 0


class Faces(tfds.core.GeneratorBasedBuilder):
  """Procedural identities for face verification and one-shot recognition."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "800 identities in disjoint train/validation/test splits.",
                   "1.1.0": "Images stored as raw bytes (same values); faces/32."}
  # 32: the size the default recipe trains at, 4x cheaper to prepare than 64 (the tests'
  # preset uses it); 64 and 96 keep detail to downsample or crop from.
  BUILDER_CONFIGS = [FacesConfig(name="64", size=64), FacesConfig(name="96", size=96),
                     FacesConfig(name="32", size=32)]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": pixels((s, s, 3)),
            "label": tfds.features.ClassLabel(num_classes=NUM_IDENTITIES),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    first, count, per_person = SPLITS[split]
    for i in range(count * per_person):
      person = first + i // per_person
      rng = np.random.default_rng((cfg.seed, SPLIT_SEEDS[split], i))
      yield i, {"image": render(rng, identity(cfg.seed, person), cfg.size), "label": person}


def split_identities(split: str) -> range:
  first, count, _ = SPLITS[split]
  return range(first, first + count)


def grid_of(person_ids, per_person: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
  """Rows of `per_person` fresh photographs of each identity: `[P * size, K * size, 3]`."""
  rows = []
  for p in person_ids:
    rng = np.random.default_rng((seed, 99, p))
    rows.append(np.concatenate([render(rng, identity(seed, p), size)
                                for _ in range(per_person)], 1))
  return np.concatenate(rows, 0)

