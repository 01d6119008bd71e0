"""Removes, from the corpus files named on standard input, every one that carries 64 bytes in a
row of a photograph under the folder given (runs of fewer than 8 byte values aside) (the cut photographs the fuzzer also starts from are
not the project's, so nothing derived from them is committed). Runs of bytes the project's own
corpus already holds (standard JPEG tables, say) do not count. Prints what it removed."""

import pathlib
import sys

WINDOW = 64


def windows(data: bytes) -> set[int]:
    # Runs of few byte values (padding, fills) are in every file and no one's content.
    return {
        hash(data[i : i + WINDOW])
        for i in range(0, max(len(data) - WINDOW + 1, 0))
        if len(set(data[i : i + WINDOW])) >= 8
    }


def files(folder: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def main() -> None:
    photos_dir, corpus_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    candidates = {pathlib.Path(line.strip()).resolve() for line in sys.stdin if line.strip()}
    photos: set[int] = set()
    for data in {p.read_bytes() for p in files(photos_dir)}:
        photos |= windows(data)
    for path in files(corpus_dir):
        if path.resolve() not in candidates:
            photos -= windows(path.read_bytes())
    for path in sorted(candidates):
        if path.is_file() and windows(path.read_bytes()) & photos:
            path.unlink()
            print(f"not kept (carries a photograph): {path}")


if __name__ == "__main__":
    main()
