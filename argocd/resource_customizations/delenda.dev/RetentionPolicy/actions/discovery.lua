-- The actions Argo CD offers on a delenda.dev RetentionPolicy.
local actions = {}
-- A suspended policy does not run, not even when asked to.
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["run-now"] = {["disabled"] = suspended}
return actions
