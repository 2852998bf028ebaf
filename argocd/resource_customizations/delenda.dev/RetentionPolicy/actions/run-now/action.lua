-- Run the policy once now, whatever its schedule: the operator runs a
-- policy once for each new value of the delenda.dev/run-now annotation
-- (here the current time in UTC, to the second,
-- in a form that is safe in a run's id) and records the value it answered
-- in status.runNowAnswered.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["delenda.dev/run-now"] = os.date("!%Y%m%dT%H%M%SZ")
return obj
