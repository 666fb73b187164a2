-- Argo CD health check for serving.specops.dev/v1alpha1 SpeculativeDeployment.
--
-- Installed as resource.customizations.health.serving.specops.dev_SpeculativeDeployment
-- (see argocd-cm.yaml next to this file). Argo CD runs this body with the live object in
-- `obj` and expects a table {status, message}.
--
-- Why these rules: a status that describes an older spec says nothing about the current
-- one, so anything not yet observed is Progressing. The Resolved, Compatible and Planned
-- conditions are the operator's verdict on the spec itself (model missing, drafter does
-- not fit the verifier, no GPU plan): False there needs a human, so it is Degraded.
-- Ready decides the rest; Speculating=False is a policy choice, never unhealthy.
local hs = {}

local function describe(c)
  local text = c.type .. " " .. tostring(c.status)
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the SpecOps operator to reconcile this resource"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  if observed ~= nil then
    hs.message = hs.message .. " (status describes generation " .. tostring(observed) .. ")"
  end
  return hs
end

local byType = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type ~= nil then
      byType[c.type] = c
    end
  end
end

-- A condition written for an older generation is stale, whatever its status.
local function current(c)
  return c ~= nil and (generation == nil or c.observedGeneration == nil
    or c.observedGeneration >= generation)
end

for _, t in ipairs({"Resolved", "Compatible", "Planned"}) do
  local c = byType[t]
  if current(c) and c.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

local ready = byType["Ready"]
if ready == nil or not current(ready) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

local progressing = byType["Progressing"]
if ready.status == "Unknown" or (current(progressing) and progressing.status == "True") then
  hs.status = "Progressing"
  if current(progressing) and progressing.status == "True" then
    hs.message = describe(progressing)
  else
    hs.message = describe(ready)
  end
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready)
return hs
