#!/usr/bin/env bash
# Fails when a built binary or other binary file is tracked (staged files count).
# Binary is what git itself calls binary (it would show "Bin" in a diff). The only
# binaries allowed are images in docs/ and fuzz or test data, named by extension;
# an executable or archive (ELF, Mach-O, PE, ar, gzip, zip, ...) fails under any name.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
empty_tree=$(git hash-object -t tree /dev/null)
status=0
while IFS=$'\t' read -r added _ path; do
  [ "$added" = "-" ] || continue
  [ -f "$path" ] || continue # staged for deletion
  magic=$(head -c 4 "$path" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
    7f454c46*) kind="an ELF executable" ;;
    cffaedfe*|cefaedfe*|feedface*|feedfacf*|cafebabe*) kind="a Mach-O binary" ;;
    4d5a*) kind="a Windows executable" ;;
    213c6172*) kind="an ar archive" ;;
    1f8b*) kind="a gzip file" ;;
    504b0304*) kind="a zip archive" ;;
    *)
      case "$path" in
        docs/*.png|docs/*.jpg|docs/*.gif|docs/*.webp|*/testdata/*) continue ;;
      esac
      kind="a binary file" ;;
  esac
  echo "$path is $kind: built or binary files do not belong in the tree (git rm --cached it, and add it to .gitignore if a build makes it)" >&2
  status=1
done < <(git diff --cached --numstat --no-renames "$empty_tree")
exit $status
