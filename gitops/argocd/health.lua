-- Argo CD health check for awsauth.dev/IamIdentityMapping (aws-auth-operator).
-- Argo CD runs it with gopher-lua (Lua 5.1); `obj` is the live object.
--
--   Progressing  no status yet, or the status describes an older generation (the operator sets
--                no Reconciling condition: it writes each status once the outcome is known, so
--                a stale observedGeneration is what "in progress" looks like), or Ready=False
--                while the EKS access entry is on its way (reason Pending or EksError, with
--                --access-entries=mirror|only; never Stalled), or while a permission set
--                (spec.ssoPermissionSet) waits for its first answer from IAM (reason
--                PermissionSetUnresolved; never Stalled)
--   Degraded     Stalled=True (invalid spec, conflict, protected principal, group policy,
--                does not fit, blocked write, a foreign access entry, a cluster in CONFIG_MAP
--                mode, a permission set with no role or several: NoRoleFound,
--                SeveralRolesFound), Conflict=True, or any other Ready=False (e.g. a drift
--                left in place)
--   Healthy      Ready=True for the current generation (served by aws-auth, by an access
--                entry, or both); for a mapping that cannot become an access entry (it stays
--                in aws-auth), the AccessEntrySynced condition (NotMigratable) says why
local hs = {}

local function describe(condition)
  local text = condition.type
  if condition.reason ~= nil and condition.reason ~= "" then
    text = text .. " (" .. condition.reason .. ")"
  end
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for aws-auth-operator to render this mapping"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for aws-auth-operator to process generation " .. tostring(generation)
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  if condition.type ~= nil then
    conditions[condition.type] = condition
  end
end

local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local conflict = conditions["Conflict"]
if conflict ~= nil and conflict.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(conflict)
  return hs
end

local ready = conditions["Ready"]
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for aws-auth-operator to process generation " .. tostring(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  -- Ready, and served by aws-auth only: say why the access entry is not there (NotMigratable).
  local access = conditions["AccessEntrySynced"]
  if access ~= nil and access.status == "False" then
    hs.message = (hs.message or "") .. "; " .. describe(access)
  end
  return hs
end

-- The access-entry side in progress: the access-entry loop has not handled this generation yet,
-- or EKS could not be reached or refused a call (retried at its next pass). Or a permission set
-- not resolved to its role yet: IAM has not answered (Resolving) or could not be asked
-- (IamUnavailable), retried at the next pass; a person must act only when IAM answered with no
-- role or several, and then the mapping is Stalled (above).
if ready.status == "False" and (ready.reason == "Pending" or ready.reason == "EksError"
    or ready.reason == "PermissionSetUnresolved") then
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
