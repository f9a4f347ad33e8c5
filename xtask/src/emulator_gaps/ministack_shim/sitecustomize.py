"""Patches MiniStack 1.5.33 where a gap cannot be bridged from outside (xtask/src/emulator_gaps).

Python imports this module at start-up when its directory is on PYTHONPATH, which
xtask/src/emulator.rs sets for the emulator process only. Each patch makes the emulator
accept, store or return what AWS does, or reports what cannot be observed from outside; the
behaviour (alarm evaluation, events, metrics) stays in the Rust bridges. The numbers refer to
the gaps documented in xtask/src/emulator_gaps/mod.rs.
"""

import json
import os
import sys
import threading
import time
from datetime import datetime, timezone

PINNED = "1.5.33"
# What the Rust metrics bridge looks for in the emulator's log.
LINE_PREFIX = "ministack-shim sqs "


def _is_emulator():
    return os.path.basename(sys.argv[0] if sys.argv else "") == "ministack"


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)


# ---------------------------------------------------------------------------------------
# Gap 2: CloudWatch alarms
# ---------------------------------------------------------------------------------------


def _iso_ms(epoch):
    at = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _metric_queries(raw):
    """Metrics (MetricDataQuery list) as PutMetricAlarm and CloudFormation give them, with the
    numbers and booleans a template's parameters leave as strings made typed."""
    queries = []
    for query in raw or []:
        if not isinstance(query, dict):
            continue
        out = {k: v for k, v in query.items() if v is not None}
        if "ReturnData" in out:
            out["ReturnData"] = _truthy(out["ReturnData"])
        if "Period" in out:
            out["Period"] = int(out["Period"])
        stat = out.get("MetricStat")
        if isinstance(stat, dict):
            stat = dict(stat)
            if "Period" in stat:
                stat["Period"] = int(stat["Period"])
            metric = dict(stat.get("Metric") or {})
            metric["Dimensions"] = [
                {"Name": d.get("Name"), "Value": d.get("Value")}
                for d in metric.get("Dimensions") or []
                if isinstance(d, dict)
            ]
            stat["Metric"] = metric
            out["MetricStat"] = stat
        queries.append(out)
    return queries


def _as_math_alarm(alarm, queries, given):
    """A stored alarm record made a metric-math one: its Metrics, and none of the single
    metric's fields the emulator defaults (AWS returns none for such an alarm)."""
    alarm["Metrics"] = queries
    for key in ("MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Period", "Unit", "Dimensions"):
        if key not in given or key == "Dimensions":
            alarm.pop(key, None)


def _patch_cloudwatch():
    from ministack.services import cloudwatch as cw

    # The bridge is the only evaluator: the emulator's own evaluation on PutMetricData
    # ignores dimensions and M out of N, and fought the bridge's states.
    cw._evaluate_alarm = lambda alarm: None

    put_metric_alarm = cw._put_metric_alarm

    def _put_metric_alarm(params, cbor_data, is_cbor, is_json=False):
        result = put_metric_alarm(params, cbor_data, is_cbor, is_json)
        queries = _metric_queries(cbor_data.get("Metrics")) if (is_cbor or is_json) else []
        name = cbor_data.get("AlarmName") if (is_cbor or is_json) else None
        if queries and result[0] == 200 and name in cw._alarms:
            _as_math_alarm(cw._alarms[name], queries, cbor_data)
        return result

    cw._put_metric_alarm = _put_metric_alarm

    # SetAlarmState's StateReasonData, kept for the history entry the same call records.
    pending = {"reason_data": None}
    set_alarm_state = cw._set_alarm_state

    def _set_alarm_state(params, cbor_data, is_cbor, is_json=False):
        data = cbor_data.get("StateReasonData") if (is_cbor or is_json) else cw._p(params, "StateReasonData")
        pending["reason_data"] = data or None
        try:
            return set_alarm_state(params, cbor_data, is_cbor, is_json)
        finally:
            pending["reason_data"] = None

    cw._set_alarm_state = _set_alarm_state

    record_history = cw._record_history

    def _record_history(alarm_name, old_state, new_state, reason, alarm_type="MetricAlarm", reason_data=None):
        """As the emulator's, with what AWS records too: millisecond timestamps (the
        alarm's StateUpdatedTimestamp the same instant) and SetAlarmState's reason data."""
        if reason_data is None and pending["reason_data"]:
            try:
                reason_data = json.loads(pending["reason_data"])
            except ValueError:
                reason_data = pending["reason_data"]
        record_history(alarm_name, old_state, new_state, reason, alarm_type, reason_data)
        now = time.time()
        entries = cw._history_entries()
        if entries and entries[-1].get("AlarmName") == alarm_name:
            entries[-1]["Timestamp"] = _iso_ms(now)
        alarm = cw._alarms.get(alarm_name) or cw._composite_alarms.get(alarm_name)
        if alarm is not None and old_state != new_state:
            alarm["StateUpdatedTimestamp"] = now
            if "StateTransitionedTimestamp" in alarm:
                alarm["StateTransitionedTimestamp"] = now

    cw._record_history = _record_history


def _patch_cloudformation_alarms():
    from ministack.services import cloudwatch as cw
    from ministack.services.cloudformation import provisioners as p

    metric_alarm_record = p._cw_metric_alarm_record

    def _cw_metric_alarm_record(name, props):
        queries = _metric_queries(props.get("Metrics"))
        if not queries:
            return metric_alarm_record(name, props)
        plain = {k: v for k, v in props.items() if k != "Metrics"}
        plain.setdefault("MetricName", "-")
        plain.setdefault("Namespace", "-")
        alarm = metric_alarm_record(name, plain)
        _as_math_alarm(alarm, queries, props)
        return alarm

    p._cw_metric_alarm_record = _cw_metric_alarm_record

    def _call(handler, body):
        status, _headers, payload = handler({}, body, False, True)
        if status != 200:
            raise ValueError(payload.decode() if isinstance(payload, bytes) else str(payload))

    def _put_composite(name, props):
        body = {"AlarmName": name, "AlarmRule": props.get("AlarmRule", "")}
        for key in ("AlarmDescription", "AlarmActions", "OKActions", "InsufficientDataActions"):
            if props.get(key) is not None:
                body[key] = props[key]
        if props.get("ActionsEnabled") is not None:
            body["ActionsEnabled"] = _truthy(props["ActionsEnabled"])
        _call(cw._put_composite_alarm, body)
        return name, {"Arn": cw._composite_alarms[name]["AlarmArn"]}

    def _composite_create(logical_id, props, stack_name):
        name = props.get("AlarmName") or p._physical_name(stack_name, logical_id, max_len=255)
        return _put_composite(name, props)

    def _composite_delete(physical_id, props):
        if physical_id in cw._composite_alarms:
            _call(cw._delete_alarms, {"AlarmNames": [physical_id]})

    def _composite_update(physical_id, old_props, new_props, stack_name, logical_id=None):
        name = new_props.get("AlarmName") or physical_id
        created = _put_composite(name, new_props)
        if name != physical_id:
            _composite_delete(physical_id, old_props)
        return created

    p._RESOURCE_HANDLERS["AWS::CloudWatch::CompositeAlarm"] = {
        "create": _composite_create,
        "update": _composite_update,
        "update_with_logical_id": True,
        "delete": _composite_delete,
    }


# ---------------------------------------------------------------------------------------
# Gap 3: an event source mapping created with Enabled: false
# ---------------------------------------------------------------------------------------


def _patch_cloudformation_mappings():
    from ministack.services import lambda_svc
    from ministack.services.cloudformation import provisioners as p

    handlers = p._RESOURCE_HANDLERS["AWS::Lambda::EventSourceMapping"]
    create, update = handlers["create"], handlers["update"]

    def _settle(esm_id, props):
        esm = lambda_svc._esms.get(esm_id)
        if esm is not None and "Enabled" in props:
            enabled = _truthy(props["Enabled"])
            esm["Enabled"] = enabled
            esm["State"] = "Enabled" if enabled else "Disabled"

    def _create(logical_id, props, stack_name):
        esm_id, attrs = create(logical_id, props, stack_name)
        _settle(esm_id, props)
        return esm_id, attrs

    def _update(physical_id, old_props, new_props, stack_name):
        esm_id, attrs = update(physical_id, old_props, new_props, stack_name)
        _settle(esm_id, new_props)
        return esm_id, attrs

    handlers["create"], handlers["update"] = _create, _update


# ---------------------------------------------------------------------------------------
# Gap 4: SQS queue metrics (what the emulator does not publish, reported for the bridge)
# ---------------------------------------------------------------------------------------


def _patch_sqs():
    from ministack.services import sqs

    counts = {}  # (queue name, epoch second) -> [sent, received, deleted]
    lock = threading.Lock()

    def _count(queue, kind, n):
        if n <= 0 or not queue:
            return
        with lock:
            bucket = counts.setdefault((queue, int(time.time())), [0, 0, 0])
            bucket[kind] += n

    send = sqs._act_send_message

    def _act_send_message(data, qurl):
        result = send(data, qurl)
        _count(sqs._get_q(data.get("QueueUrl", qurl)).get("name"), 0, 1)
        return result

    collect = sqs._collect_msgs

    def _collect_msgs(q, max_n, vis_timeout):
        received = collect(q, max_n, vis_timeout)
        _count(q.get("name"), 1, len(received))
        return received

    delete = sqs._act_delete_message

    def _act_delete_message(data, qurl):
        result = delete(data, qurl)
        _count(sqs._get_q(data.get("QueueUrl", qurl)).get("name"), 2, 1)
        return result

    delete_batch = sqs._act_delete_message_batch

    def _act_delete_message_batch(data, qurl):
        result = delete_batch(data, qurl)
        q = sqs._get_q(data.get("QueueUrl", qurl))
        _count(q.get("name"), 2, len(result.get("Successful") or []))
        return result

    delete_for_esm = sqs._delete_messages_for_esm

    def _delete_messages_for_esm(queue_url, receipt_handles):
        try:
            q = sqs._get_q(queue_url)
            n = sum(1 for m in list(q["messages"]) if m.get("receipt_handle") in (receipt_handles or ()))
        except Exception:
            q, n = None, 0
        delete_for_esm(queue_url, receipt_handles)
        if q is not None:
            _count(q.get("name"), 2, n)

    sqs._act_send_message = _act_send_message
    sqs._collect_msgs = _collect_msgs
    sqs._act_delete_message = _act_delete_message
    sqs._act_delete_message_batch = _act_delete_message_batch
    sqs._delete_messages_for_esm = _delete_messages_for_esm
    sqs._HANDLERS.update({
        "SendMessage": _act_send_message,
        "DeleteMessage": _act_delete_message,
        "DeleteMessageBatch": _act_delete_message_batch,
    })

    def _gauges(q, now):
        visible = not_visible = delayed = 0
        oldest = None
        for m in list(q.get("messages") or []):
            if m.get("visible_at", 0) <= now:
                visible += 1
            elif m.get("receive_count", 0) == 0:
                delayed += 1
            else:
                not_visible += 1
            # AWS leaves out messages received three or more times.
            if m.get("receive_count", 0) < 3:
                sent = m.get("enqueued_at", m.get("sent_at", now))
                oldest = sent if oldest is None else min(oldest, sent)
        age = 0 if oldest is None else max(0, int(now - oldest))
        return visible, not_visible, delayed, age

    def _report_forever():
        last = int(time.time())
        while True:
            time.sleep(1.0 - (time.time() % 1.0) + 0.05)
            second = int(time.time()) - 1
            if second < last:
                continue
            now = time.time()
            with lock:
                done = {k: v for k, v in counts.items() if k[1] <= second}
                for k in done:
                    del counts[k]
            lines = []
            for (_account, _region, _url), q in list(sqs._queues._data.items()):
                name = q.get("name")
                visible, not_visible, delayed, age = _gauges(q, now)
                for s in range(last, second + 1):
                    sent, received, deleted = done.pop((name, s), (0, 0, 0))
                    lines.append(LINE_PREFIX + json.dumps({
                        "queue": name, "second": s,
                        "sent": sent, "received": received, "deleted": deleted,
                        "visible": visible, "not_visible": not_visible,
                        "delayed": delayed, "oldest_age": age,
                    }, separators=(",", ":")))
            last = second + 1
            if lines:
                sys.__stderr__.write("\n".join(lines) + "\n")
                sys.__stderr__.flush()

    threading.Thread(target=_report_forever, name="ministack-shim-sqs", daemon=True).start()


# ---------------------------------------------------------------------------------------
# Gap 5: an update kills the function's invocations in flight
# ---------------------------------------------------------------------------------------


def _patch_lambda_updates():
    """On AWS an invocation in flight finishes on the code and configuration it started with
    when its function is updated; the emulator stops its process at once (the caller gets
    "Runtime exited before returning a response"). Invalidated workers still leave the pool
    at once, so new invocations run the new code; a busy one is stopped when its invocation
    ends (`Worker.invoke` holds `_lock` throughout), once its last log lines are in
    (`_shim_stopping`, see `_patch_invocation_logs`)."""
    from ministack.core import lambda_runtime
    from ministack.services import lambda_svc

    kill, invalidate = lambda_runtime.kill_workers, lambda_svc.invalidate_worker
    invalidating = threading.local()

    def _kill_when_idle(worker):
        with worker._lock:
            kill([worker])

    def _kill_workers(workers):
        if not getattr(invalidating, "on", False):
            return kill(workers)
        idle = []
        for worker in workers:
            if worker is None or worker._lock.acquire(blocking=False):
                if worker is not None:
                    worker._lock.release()
                idle.append(worker)
            else:
                worker._shim_stopping = True
                threading.Thread(
                    target=_kill_when_idle, args=(worker,), name="ministack-shim-drain", daemon=True
                ).start()
        kill(idle)

    def _invalidate_worker(*args, **kwargs):
        invalidating.on = True
        try:
            return invalidate(*args, **kwargs)
        finally:
            invalidating.on = False

    lambda_runtime.kill_workers = _kill_workers
    # lambda_svc imported it by name; CloudFormation calls it through lambda_svc.
    lambda_svc.invalidate_worker = _invalidate_worker


def _patch_invocation_logs():
    """An invocation's log is what its worker's stderr reader queued after the response,
    until 5 ms of quiet, or nothing if no line came within 50 ms; later lines go to the
    worker's next invocation, and nowhere if it has none. The lines are in the pipe before
    the response, but on a loaded machine the reader thread can take longer to queue them:
    an idle worker's last batch lost its "processed" lines. Every invocation here waits up
    to 500 ms for its first line and 20 ms of quiet (all our functions log); a worker that
    will be stopped after its invocation (see `_patch_lambda_updates`) waits 200 ms of
    quiet, up to 2 s."""
    from ministack.core import lambda_runtime

    drain = lambda_runtime.Worker._drain_stderr_bounded

    def _drain_stderr_bounded(self, first_line_wait=0.5, idle_confirm=0.02, hard_cap=1.0):
        if getattr(self, "_shim_stopping", False):
            idle_confirm, hard_cap = 0.2, 2.0
        return drain(
            self,
            first_line_wait=max(first_line_wait, 0.5),
            idle_confirm=max(idle_confirm, 0.02),
            hard_cap=max(hard_cap, 1.0),
        )

    lambda_runtime.Worker._drain_stderr_bounded = _drain_stderr_bounded


def _install():
    try:
        from importlib.metadata import version

        found = version("ministack")
    except Exception:
        found = "unknown"
    if found != PINNED:
        sys.__stderr__.write(f"ministack-shim: written for MiniStack {PINNED}, found {found}; not applied\n")
        return
    for patch in (
        _patch_cloudwatch,
        _patch_cloudformation_alarms,
        _patch_cloudformation_mappings,
        _patch_sqs,
        _patch_lambda_updates,
        _patch_invocation_logs,
    ):
        patch()
    sys.__stderr__.write("ministack-shim: applied\n")


if _is_emulator():
    _install()
