#!/usr/bin/env bash
# Prints the path of the Python the project runs on (3.13, the Lambda runtime's), or says how to
# get one and fails. Looks on PATH first, then in pyenv's versions (a pyenv shim on PATH is
# only usable when that version is selected, so the interpreter itself is printed).
set -euo pipefail
want="3.13"
works() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" >/dev/null 2>&1; }
if candidate="$(command -v "python$want" 2>/dev/null)" && works "$candidate"; then
  echo "$candidate"; exit 0
fi
root="${PYENV_ROOT:-$HOME/.pyenv}"
if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; fi
for candidate in $(ls -d "$root"/versions/"$want"*/bin/python"$want" 2>/dev/null | sort -V -r); do
  if works "$candidate"; then echo "$candidate"; exit 0; fi
done
cat >&2 <<MSG
storyq runs on Python $want (the Lambda runtime it deploys to), and none was found.
Install it, then run make again:
  Debian 13 / Ubuntu 24.10+:  sudo apt-get install -y python$want python$want-venv
  with pyenv:                 pyenv install $want
Or name one: make PYTHON=/path/to/python$want ...
MSG
exit 1
