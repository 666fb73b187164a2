-- Argo CD health check for serving.specops.dev/v1alpha1 SpeculativeDeployment.
--
-- Installed as resource.customizations.health.serving.specops.dev_SpeculativeDeployment
-- (see argocd-cm.yaml next to this file). Argo CD runs this body with the live object in
-- `obj` and expects a table {status, message}.
--
-- Why these rules: a status that describes an older spec says nothing about the current
-- one, so anything not yet observed is Progressing. ModelsResolved and Compatible are the
-- operator's verdict on the spec itself: False there (model missing, drafter does not fit
-- the verifier, no GPU plan) needs a human, so it is Degraded; Unknown means it is still
-- retrying (Hub unreachable), so Progressing. ReplicasSchedulable=False means the cluster
-- has no room for the GPUs asked for: Degraded. Ready decides the rest, by its reason: a
-- rollout that is still moving is Progressing, one that gave up is Degraded.
-- SpeculationActive=False and MetricsAvailable=False are policy and observation, never
-- unhealthy.
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

for _, t in ipairs({"ModelsResolved", "Compatible", "ReplicasSchedulable"}) do
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

if ready.status == "True" and ready.reason ~= "AvailableOldGeneration" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

-- Still moving: creating the Deployment, pods starting, an update rolling, or the new
-- generation not applied yet (the old one keeps serving meanwhile).
local moving = {
  Creating = true,
  RollingOut = true,
  ReplicasNotAvailable = true,
  AvailableOldGeneration = true,
}
if ready.status == "Unknown" or moving[ready.reason] then
  hs.status = "Progressing"
  local resolved = byType["ModelsResolved"]
  if current(resolved) and resolved.status == "Unknown" then
    hs.message = describe(resolved)
  else
    hs.message = describe(ready)
  end
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready)
return hs
