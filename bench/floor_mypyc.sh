#!/usr/bin/env bash
# The compiled-core experiment of bench/README.md ("The floor: what 1.5x raw would take"): a copy of
# src/seqtrade in OUT with the named modules compiled by mypyc, OUTSIDE the project's build. Then
#   python bench/floor.py --pythonpath OUT     (the ladder's servers import the compiled modules)
# Usage: bench/floor_mypyc.sh OUT seqtrade/wire.py seqtrade/models.py ...   (paths inside the package)
# The copy differs from the source in two ways, both needed for the compiled modules to import (each
# failed at import without it): ``slots=True`` is dropped from their dataclasses (mypyc makes its own
# native classes), and wire.py's ``Codec`` (a frozen generic dataclass) stays a Python class
# (``mypyc_attr(native_class=False)``, from mypy_extensions: a dependency of the compiled build).
set -euo pipefail
out=$1
shift
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out"
mkdir -p "$out"
cp -r "$here/src/seqtrade" "$out/"
find "$out" -name __pycache__ -prune -exec rm -rf {} +
cat > "$out/mypy.ini" <<'INI'
[mypy]
python_version = 3.11
[mypy-msgpack,msgpack.*,hdrh,hdrh.*,matplotlib,matplotlib.*,pyarrow,pyarrow.*]
ignore_missing_imports = True
INI
cd "$out"
for m in "$@"; do
    sed -i -e 's/, slots=True//; s/slots=True, //; s/@dataclass(slots=True)/@dataclass/' "$m"
done
python3 - <<'PY'
p = "seqtrade/wire.py"
s = open(p).read()
old = "@dataclass(frozen=True)\nclass Codec(Generic[M]):"
assert old in s, "wire.py's Codec changed: update bench/floor_mypyc.sh"
s = s.replace(old, "@mypyc_attr(native_class=False)\n" + old)
s = s.replace("import msgpack\n", "import msgpack\nfrom mypy_extensions import mypyc_attr\n", 1)
open(p, "w").write(s)
PY
start=$(date +%s)
mypyc "$@" > build.log 2>&1 || { tail -30 build.log; exit 1; }
echo "compiled $# modules in $(( $(date +%s) - start )) s into $out ($(ls ./*.so seqtrade/*.so seqtrade/*/*.so 2>/dev/null | wc -l) shared objects)"
