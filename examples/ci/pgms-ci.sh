#!/bin/sh
# pgms in a pipeline: the plan of a pull request as one comment that is kept
# up to date, the plan saved as an artifact, and on merge that very plan
# applied (pgms refuses it, naming what changed, if the files or the cluster
# moved on since it was reviewed). github-actions.yml and gitlab-ci.yml call
# this script; the repository's tests run its plan and apply against real
# servers (cmd/pgms/testdata/script/ci_pipeline.txtar).
#
#   pgms-ci.sh plan        validate, plan, write the comment and the saved plan
#   pgms-ci.sh comment     post the comment on the pull/merge request, or update
#                          the one posted before; skip it when unchanged
#   pgms-ci.sh fetch-plan  download the saved plan of the merged request
#   pgms-ci.sh apply       apply the saved plan, events as JSON lines
#
# Settings (environment):
#   PGMS_CONFIG        topology directory (default: .)
#   PGMS_CI_DIR        where the plan, the comment and the events go
#                      (default: pgms-ci); upload it as the artifact
#   PGMS_CI_ID         tells apart the comments of several topologies in
#                      one repository (default: the topology directory)
#   PGMS_LOCK_TIMEOUT  how long apply waits for another run (default: 10m)
#   the node DSNs, as the topology's env() calls name them
#
# The comment step needs curl and jq, and a token: GITHUB_TOKEN on GitHub
# (pull-requests: write), PGMS_GITLAB_TOKEN on GitLab (a project access
# token with the api scope: CI_JOB_TOKEN cannot write notes).
set -eu

dir=${PGMS_CI_DIR:-pgms-ci}
config=${PGMS_CONFIG:-.}
id=${PGMS_CI_ID:-$config}
plan_file=$dir/pgms.plan
comment_file=$dir/comment.md

die() {
	echo "pgms-ci: $*" >&2
	exit 1
}

# annotate turns pgms validate -json diagnostics into GitHub annotations,
# shown on the files of the pull request.
annotate() {
	[ "${GITHUB_ACTIONS:-}" = true ] && command -v jq >/dev/null || return 0
	jq -r '.diagnostics[] | "::\(.severity) file=\(.file // ""),line=\(.line // 1),col=\(.column // 1),endLine=\(.end_line // .line // 1),endColumn=\(.end_column // .column // 1),title=pgms::\(.summary)"' "$1" || true
}

cmd_plan() {
	mkdir -p "$dir"
	rm -f "$plan_file" "$comment_file" "$dir/changes"
	pgms version
	if ! pgms validate --config "$config" --json >"$dir/validate.json"; then
		annotate "$dir/validate.json"
		pgms validate --config "$config" || true
		die "the topology files are not valid"
	fi
	annotate "$dir/validate.json"
	# The markdown goes to the comment, the saved plan to the artifact; the
	# job log shows the plan as text, from the saved file.
	status=0
	pgms plan --config "$config" --format markdown --out "$plan_file" --detailed-exitcode >"$comment_file" || status=$?
	if [ -n "${PGMS_CI_ID:-}" ]; then
		printf '<!-- pgms-ci id=%s -->\n' "$id" >>"$comment_file"
	fi
	case $status in
	0) echo no >"$dir/changes" ;;
	2) echo yes >"$dir/changes" ;;
	*)
		cat "$comment_file"
		die "pgms plan failed (exit $status); the comment says why"
		;;
	esac
	pgms show "$plan_file"
}

# marker prints the fingerprint line of a comment body on standard input.
marker() {
	sed -n '1s/^<!-- pgms-plan fingerprint=\([0-9a-f]*\) -->$/\1/p'
}

cmd_comment() {
	[ -s "$comment_file" ] || die "no $comment_file: run pgms-ci.sh plan first"
	command -v jq >/dev/null || die "jq is needed to post the comment"
	new=$(marker <"$comment_file")
	if [ -n "${GITHUB_ACTIONS:-}" ]; then
		: "${GITHUB_TOKEN:?GITHUB_TOKEN is needed to comment}"
		pr=${PGMS_PR_NUMBER:-$(jq -r '.pull_request.number // empty' "${GITHUB_EVENT_PATH:-/dev/null}")}
		[ -n "$pr" ] || die "not a pull request: no comment"
		api="${GITHUB_API_URL:-https://api.github.com}/repos/$GITHUB_REPOSITORY"
		auth="Authorization: Bearer $GITHUB_TOKEN"
		list="$api/issues/$pr/comments?per_page=100"
		one="$api/issues/comments"
		create="$api/issues/$pr/comments"
		update=PATCH
	elif [ -n "${GITLAB_CI:-}" ]; then
		: "${PGMS_GITLAB_TOKEN:?PGMS_GITLAB_TOKEN is needed to comment}"
		mr=${CI_MERGE_REQUEST_IID:-}
		[ -n "$mr" ] || die "not a merge request pipeline: no comment"
		api="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$mr"
		auth="PRIVATE-TOKEN: $PGMS_GITLAB_TOKEN"
		list="$api/notes?per_page=100&sort=asc"
		one="$api/notes"
		create="$api/notes"
		update=PUT
	else
		die "neither GitHub Actions nor GitLab CI: print $comment_file instead"
	fi
	# Our comment: the first one opening with the marker (and carrying our
	# id when one is set).
	found=$(curl -fsS -H "$auth" "$list" | jq -r --arg id "<!-- pgms-ci id=$id -->" --arg want "${PGMS_CI_ID:+1}" '
		[.[] | select(.body | startswith("<!-- pgms-plan fingerprint="))
		     | select($want == "" or (.body | contains($id)))][0]
		| select(. != null) | "\(.id) \(.body | split("\n")[0])"')
	old_id=${found%% *}
	old=$(printf '%s\n' "${found#* }" | marker)
	body=$(jq -Rs '{body: .}' <"$comment_file")
	if [ -n "$found" ] && [ "$old" = "$new" ]; then
		echo "pgms-ci: the plan comment is up to date (fingerprint $new)"
	elif [ -n "$found" ]; then
		printf '%s' "$body" | curl -fsS -o /dev/null -X "$update" -H "$auth" -H 'Content-Type: application/json' --data @- "$one/$old_id"
		echo "pgms-ci: updated the plan comment (fingerprint $old -> $new)"
	else
		printf '%s' "$body" | curl -fsS -o /dev/null -X POST -H "$auth" -H 'Content-Type: application/json' --data @- "$create"
		echo "pgms-ci: posted the plan comment (fingerprint $new)"
	fi
}

# fetch-plan downloads the artifact of the plan job of the request just
# merged, so that apply carries out the plan that was reviewed.
cmd_fetch_plan() {
	mkdir -p "$dir"
	if [ -n "${GITHUB_ACTIONS:-}" ]; then
		# The workflow's apply job runs when the pull request closes merged:
		# its head commit is the one the plan job ran on.
		sha=$(jq -r '.pull_request.head.sha' "$GITHUB_EVENT_PATH")
		run=$(gh run list --workflow "${PGMS_CI_WORKFLOW:-$GITHUB_WORKFLOW}" --commit "$sha" --status success \
			--json databaseId --jq '.[0].databaseId')
		[ -n "$run" ] && [ "$run" != null ] || die "no successful plan run for $sha: plan the pull request again"
		gh run download "$run" --name "${PGMS_CI_ARTIFACT:-pgms-plan}" --dir "$dir"
	elif [ -n "${GITLAB_CI:-}" ]; then
		: "${PGMS_GITLAB_TOKEN:?PGMS_GITLAB_TOKEN is needed to fetch the plan}"
		command -v jq >/dev/null && command -v unzip >/dev/null || die "jq and unzip are needed to fetch the plan"
		api="$CI_API_V4_URL/projects/$CI_PROJECT_ID"
		auth="PRIVATE-TOKEN: $PGMS_GITLAB_TOKEN"
		mr=$(curl -fsS -H "$auth" "$api/repository/commits/$CI_COMMIT_SHA/merge_requests" | jq -r '.[0].iid // empty')
		[ -n "$mr" ] || die "commit $CI_COMMIT_SHA belongs to no merge request"
		sha=$(curl -fsS -H "$auth" "$api/merge_requests/$mr" | jq -r '.sha')
		pipeline=$(curl -fsS -H "$auth" "$api/merge_requests/$mr/pipelines" | jq -r --arg sha "$sha" '[.[] | select(.sha == $sha and .status == "success")][0].id // empty')
		[ -n "$pipeline" ] || die "no successful plan pipeline for $sha: plan the merge request again"
		job=$(curl -fsS -H "$auth" "$api/pipelines/$pipeline/jobs" | jq -r --arg name "${PGMS_CI_PLAN_JOB:-pgms-plan}" '[.[] | select(.name == $name)][0].id // empty')
		[ -n "$job" ] || die "pipeline $pipeline has no job ${PGMS_CI_PLAN_JOB:-pgms-plan}"
		curl -fsS -H "$auth" -o "$dir/artifacts.zip" "$api/jobs/$job/artifacts"
		unzip -o -q -j "$dir/artifacts.zip" -d "$dir"
	else
		die "neither GitHub Actions nor GitLab CI: copy the saved plan to $plan_file yourself"
	fi
	[ -s "$plan_file" ] || die "the artifact holds no $plan_file"
}

cmd_apply() {
	[ -s "$plan_file" ] || die "no saved plan $plan_file: run pgms-ci.sh plan (or fetch-plan) first"
	pgms version
	if [ "$(cat "$dir/changes" 2>/dev/null || echo yes)" = no ]; then
		echo "pgms-ci: the plan has no changes; nothing to apply"
		return 0
	fi
	# The saved plan was approved in review: apply asks nothing. The events
	# go to a file for the artifact; the log gets the text.
	pgms apply "$plan_file" --lock-timeout "${PGMS_LOCK_TIMEOUT:-10m}" --json >"$dir/apply-events.jsonl"
}

case ${1:-} in
plan) cmd_plan ;;
comment) cmd_comment ;;
fetch-plan) cmd_fetch_plan ;;
apply) cmd_apply ;;
*) die "usage: pgms-ci.sh plan|comment|fetch-plan|apply" ;;
esac
