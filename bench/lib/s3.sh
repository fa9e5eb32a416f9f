# The S3 comparison (issue 4): backup and restore throughput of the random
# data set to MinIO on loopback, against the local directory backend and
# against restic's S3 backend. Sourced, not run.

S3_BUCKET=nestguard-bench
S3_KEY=benchadmin
S3_SECRET=bench-secret-not-secret

s3_section() {
	local data
	data=$(data_ensure random)
	record s3 random - bytes "$(bytes_of "$data")"
	run_step s3_all "$data"
}

s3_all() {
	local data=$1 v round
	s3_start_minio
	for round in $(seq "$ROUNDS"); do
		[ "$ROUNDS" = 1 ] || log "s3: round $round of $ROUNDS"
		for v in nestguard:local nestguard:s3 restic:local restic:s3; do
			run_step s3_variant "${v%%:*}" "${v#*:}" "$data"
		done
	done
}

# s3_start_minio starts MinIO on a free loopback port with its data in the
# work directory, creates the bucket and exports the endpoint and
# credentials both tools read.
s3_start_minio() {
	local dir="$WORK/s3/minio" port cport i
	rm -rf "$dir"
	mkdir -p "$dir"
	register dir "$dir"
	port=$(free_port)
	cport=$(free_port)
	log "starting MinIO on 127.0.0.1:$port"
	MINIO_ROOT_USER=$S3_KEY MINIO_ROOT_PASSWORD=$S3_SECRET MINIO_BROWSER=off \
		"$MINIO" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" "$dir" \
		>"$LOGS/minio.log" 2>&1 &
	register pid $!
	for i in $(seq 300); do
		curl -sf "http://127.0.0.1:$port/minio/health/live" >/dev/null && break
		[ "$i" -lt 300 ] || die "MinIO did not start, see $LOGS/minio.log"
		sleep 0.1
	done
	curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_KEY:$S3_SECRET" \
		-X PUT "http://127.0.0.1:$port/$S3_BUCKET" >/dev/null
	S3_PORT=$port
	export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET NESTGUARD_S3_ENDPOINT="127.0.0.1:$port"
}

# s3_variant TOOL local|s3 DATA: init, first backup, restore, check.
s3_variant() {
	local tool=$1 where=$2 data=$3 name="$1 ($2)" repo dst="$WORK/restore/s3-$1-$2"
	if [ "$tool" = nestguard ] && [ "$NG_STATUS" != ok ]; then
		record s3 random "$name" status "TODO: $NG_STATUS"
		return 0
	fi
	record s3 random "$name" status "incomplete, see the logs"
	case $tool:$where in
	*:local) repo="$WORK/repos/s3cmp-$tool" ;;
	nestguard:s3) repo="s3://$S3_BUCKET/nestguard" ;;
	restic:s3) repo="s3:http://127.0.0.1:$S3_PORT/$S3_BUCKET/restic" ;;
	esac
	log "s3: $name"
	rm -rf "$dst"
	mkdir -p "$dst"
	register dir "$dst"
	case $repo in /*)
		rm -rf "$repo"
		register dir "$repo"
		;;
	esac
	tool_cmd "$tool" init "$repo"
	"${CMD[@]}" >"$LOGS/s3-$tool-$where-init.log" 2>&1
	tool_cmd "$tool" backup "$repo" "$data" b1
	measure s3 random "$name" backup "${CMD[@]}"
	tool_cmd "$tool" restore "$repo" "$dst" b1
	measure s3 random "$name" restore "${CMD[@]}"
	if diff -rq "$data" "$dst$data" >"$LOGS/s3-$tool-$where-check.log" 2>&1; then
		record s3 random "$name" check ok
	else
		record s3 random "$name" check DIFFERS
	fi
	rm -rf "$dst"
	record s3 random "$name" status ok
}
