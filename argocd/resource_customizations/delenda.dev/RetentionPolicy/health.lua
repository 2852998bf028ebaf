-- Argo CD health of a delenda.dev RetentionPolicy, read from the conditions
-- the operator writes (kstatus: Ready, Reconciling, Stalled) and from
-- spec.suspend. Uses only the base library, as Argo CD runs health checks
-- without the open libraries.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to validate the policy"
  return hs
end

-- A status about an older spec says nothing about this one.
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to judge generation " .. generation
  return hs
end

-- An invalid spec, a guardrail stop or records that cannot be judged need a
-- person, suspended or not.
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "No runs are scheduled until spec.suspend is false"
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  if obj.status.nextRun ~= nil then
    hs.message = hs.message .. "; next run " .. obj.status.nextRun
  end
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to validate the policy"
return hs
