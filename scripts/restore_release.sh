#!/usr/bin/env bash
# Bring a release that training.promote pruned from models/store back from git history:
#
#   bash scripts/restore_release.sh MODEL_ID [STORE]      (STORE default: models/store)
#
# Its streams then decode as before (remac-decode searches models/store; another STORE: --models
# STORE). Needs a clone with history (not a shallow one).
set -euo pipefail
cd "$(dirname "$0")/.."
ID=$1 STORE=${2:-models/store}
[ -f "models/store/$ID/model.json" ] && [ "$STORE" = models/store ] && { echo "release $ID is already in models/store"; exit 0; }
GONE=$(git log -1 --diff-filter=D --format=%H -- "models/store/$ID/model.json")
[ -n "$GONE" ] || { echo "restore_release: no release $ID was ever removed from models/store" >&2; exit 1; }
mkdir -p "$STORE"
git archive "$GONE^" "models/store/$ID" | tar -x --strip-components=2 -C "$STORE"
echo "restored release $ID into $STORE/$ID (from commit ${GONE:0:10}^)"
