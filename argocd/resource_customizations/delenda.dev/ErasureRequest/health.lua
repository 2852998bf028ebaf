-- Argo CD health of a delenda.dev ErasureRequest, read from its phase and
-- the conditions the operator writes (kstatus: Ready, Reconciling, Stalled;
-- Overdue). A Failed or overdue request is Degraded, so the application is
-- not green while a data subject waits. Uses only the base library, as
-- Argo CD runs health checks without the open libraries.
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
  hs.message = "Waiting for the operator to take the request"
  return hs
end

-- A status about an older spec says nothing about this one.
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to judge generation " .. generation
  return hs
end

local phase = obj.status.phase

-- Done: erased (proven by read-back) or previewed. A request completed
-- after its deadline stays on record as Overdue, but nothing is left to do.
if phase == "Completed" or phase == "Previewed" then
  hs.status = "Healthy"
  hs.message = "The request is " .. phase
  local overdue = condition("Overdue")
  if overdue ~= nil and overdue.status == "True" then
    hs.message = hs.message .. " (" .. describe(overdue) .. ")"
  end
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local overdue = condition("Overdue")
if overdue ~= nil and overdue.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(overdue)
  return hs
end

-- Failed passes are retried with backoff, but a person should look: the
-- message names the first target that failed, and why.
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed"
  if obj.status.targets ~= nil then
    for _, t in ipairs(obj.status.targets) do
      if t.outcome == "Failed" then
        hs.message = hs.message .. ": target " .. t.policy .. "/" .. t.target
        if t.message ~= nil then
          hs.message = hs.message .. ": " .. t.message
        end
        break
      end
    end
  end
  local reconciling = condition("Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = hs.message .. "; " .. reconciling.message
  end
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
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to take the request"
return hs
