"""The Pillow baseline for `scripts/bench`: the same work as imagelake's processing step, done
the fast way Pillow offers (draft = JPEG shrink-on-load, then thumbnail), one file at a time:
a 1024 px preview and a 256 px thumb made from it, both JPEG q80."""
import io
import sys
import time

from PIL import Image, ImageOps


def process(path):
    with Image.open(path) as im:
        im.draft("RGB", (1024, 1024))
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((1024, 1024), Image.LANCZOS)
        preview = io.BytesIO()
        im.save(preview, "JPEG", quality=80)
        im.thumbnail((256, 256), Image.LANCZOS)
        thumb = io.BytesIO()
        im.save(thumb, "JPEG", quality=80)


def main():
    files = sys.argv[1:]
    start = time.perf_counter()
    for f in files:
        process(f)
    print(f"{time.perf_counter() - start:.4f}")


if __name__ == "__main__":
    main()
