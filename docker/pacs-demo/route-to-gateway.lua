-- Demo routing: every instance Orthanc stores goes on to the AI node, as hospitals route to AI
-- nodes; the gateway decides what to score (the shared attribute rules) and groups a study's
-- instances itself (--quiet-s). Its own results (Manufacturer cxr-gateway) are not sent back:
-- the gateway would ignore them, but there is no need for the traffic.
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Manufacturer'] == 'cxr-gateway' then
    return
  end
  SendToModality(instanceId, 'cxr-gateway')
end
