#!/bin/sh
# azd postdeploy hook: once the code is published, point Event Grid at the intake function.
#
# Event Grid refuses a subscription to a function that does not exist yet ("Destination endpoint
# not found"), which is why `azd provision` leaves the subscription out (deployEventSubscription
# stays false) and this hook deploys infra/modules/eventgrid-subscription.bicep after the code,
# with the parameters main.bicep computed (PREPOST_EVENT_SUBSCRIPTION_PARAMETERS). Running it
# again changes nothing. Needs the Azure CLI, signed in (az login).
set -eu

fail() {
  echo "prepost: $*" >&2
  exit 1
}

for name in AZURE_RESOURCE_GROUP PREPOST_FUNCTION_APP_NAME PREPOST_INTAKE_FUNCTION \
  PREPOST_CONFIGURATION_SUBSCRIPTION_ID PREPOST_CONFIGURATION_RESOURCE_GROUP PREPOST_EVENT_TOPIC_NAME \
  PREPOST_EVENT_SUBSCRIPTION_PARAMETERS; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || fail "$name is not set: run azd provision first (it is an output of infra/main.bicep)"
done

# The host indexes the functions a little after the package lands: wait for the intake function.
wait_seconds=${PREPOST_FUNCTION_WAIT_SECONDS:-600}
waited=0
until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" --name "$PREPOST_FUNCTION_APP_NAME" \
  --function-name "$PREPOST_INTAKE_FUNCTION" --query name -o tsv >/dev/null 2>&1; do
  [ "$waited" -lt "$wait_seconds" ] ||
    fail "function $PREPOST_INTAKE_FUNCTION did not appear in $PREPOST_FUNCTION_APP_NAME within ${wait_seconds}s: see the app's log stream (az webapp log tail) or Application Insights"
  echo "prepost: waiting for $PREPOST_INTAKE_FUNCTION to be indexed (${waited}s)"
  sleep 15
  waited=$((waited + 15))
done

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
echo "prepost: creating or updating the Event Grid subscription on $PREPOST_EVENT_TOPIC_NAME"
az deployment group create \
  --name prepost-eventgrid-subscription \
  --subscription "$PREPOST_CONFIGURATION_SUBSCRIPTION_ID" \
  --resource-group "$PREPOST_CONFIGURATION_RESOURCE_GROUP" \
  --template-file "$here/../modules/eventgrid-subscription.bicep" \
  --parameters "$PREPOST_EVENT_SUBSCRIPTION_PARAMETERS" \
  --query properties.provisioningState -o tsv

az eventgrid system-topic event-subscription show \
  --subscription "$PREPOST_CONFIGURATION_SUBSCRIPTION_ID" \
  --resource-group "$PREPOST_CONFIGURATION_RESOURCE_GROUP" \
  --system-topic-name "$PREPOST_EVENT_TOPIC_NAME" \
  --name prepost-intake \
  --query "{state:provisioningState, types:filter.includedEventTypes, endpoint:destination.endpointType}" -o json
