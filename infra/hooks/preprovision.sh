#!/bin/sh
# azd preprovision hook: refuse to provision with missing settings or unregistered resource
# providers, with a message that says what to do, instead of a failed deployment halfway through.
# Reads the azd environment (azd env set NAME VALUE); needs the Azure CLI, signed in (az login).
set -eu

fail() {
  echo "prepost: $*" >&2
  exit 1
}

[ -n "${AZURE_RESOURCE_GROUP:-}" ] || fail "set the resource group for the app: azd env set AZURE_RESOURCE_GROUP <name> (create it first: az group create -n <name> -l <region>)"
[ -n "${PREPOST_MAINTENANCE_CONFIGURATION_ID:-}" ] || fail "set the maintenance configuration: azd env set PREPOST_MAINTENANCE_CONFIGURATION_ID /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Maintenance/maintenanceConfigurations/<name>"
[ -n "${PREPOST_MAINTENANCE_CONFIGURATION_LOCATION:-}" ] || fail "set the configuration's region: azd env set PREPOST_MAINTENANCE_CONFIGURATION_LOCATION <region>"
[ -n "${PREPOST_TARGET_SUBSCRIPTION_IDS:-}" ] || fail "set the subscriptions whose machines the configuration patches, as a JSON array: azd env set PREPOST_TARGET_SUBSCRIPTION_IDS '[\"<subscription-id>\"]'"

case "$PREPOST_MAINTENANCE_CONFIGURATION_ID" in
  /subscriptions/*/resourceGroups/*/providers/Microsoft.Maintenance/maintenanceConfigurations/* | \
  /subscriptions/*/resourcegroups/*/providers/microsoft.maintenance/maintenanceconfigurations/*) ;;
  *) fail "PREPOST_MAINTENANCE_CONFIGURATION_ID is not a maintenance configuration id: $PREPOST_MAINTENANCE_CONFIGURATION_ID" ;;
esac
case "$PREPOST_TARGET_SUBSCRIPTION_IDS" in
  \[*\]) ;;
  *) fail "PREPOST_TARGET_SUBSCRIPTION_IDS must be a JSON array, e.g. '[\"11111111-1111-1111-1111-111111111111\"]'" ;;
esac

# Optional settings (docs/deploy.md, "Deploying with azd"). The app reads its settings on the
# first invocation and, on a bad one, fails every invocation (the intake's included): catch the
# usual mistakes here, before anything is deployed.
for variable in PREPOST_ALLOWED_CONFIGURATION_IDS PREPOST_ALLOWED_SUBSCRIPTION_IDS \
  PREPOST_READINESS_CONFIGURATION_IDS PREPOST_SAFETY_CRITICAL PREPOST_ALERT_ACTION_GROUP_IDS; do
  eval "value=\${$variable:-}"
  case "$value" in
    "" | \[*\]) ;;
    *) fail "$variable must be a JSON array, e.g. '[\"first\", \"second\"]' (unset: the default)" ;;
  esac
done
for id in $(printf '%s' "${PREPOST_READINESS_CONFIGURATION_IDS:-}" | grep -o '"[^"]*"' | tr -d '"'); do
  case "$id" in
    /subscriptions/*/providers/[Mm]icrosoft.[Mm]aintenance/[Mm]aintenance[Cc]onfigurations/*) ;;
    *) fail "PREPOST_READINESS_CONFIGURATION_IDS: $id is not a maintenance configuration id" ;;
  esac
done
if [ -n "${PREPOST_MAX_ERRORS:-}" ]; then
  digits=${PREPOST_MAX_ERRORS%\%}
  case "$digits" in
    "" | *[!0-9]*) fail "PREPOST_MAX_ERRORS must be a count (3) or a percentage (10%), got $PREPOST_MAX_ERRORS" ;;
  esac
  # The bounds of shared/models/gate.py ErrorBudget.parse: 0% to 100%, or 0 to 100000 machines.
  if [ "$digits" != "$PREPOST_MAX_ERRORS" ]; then
    { [ "${#digits}" -le 3 ] && [ "$digits" -le 100 ]; } || fail "PREPOST_MAX_ERRORS: $PREPOST_MAX_ERRORS is not a percentage from 0% to 100%"
  else
    { [ "${#digits}" -le 6 ] && [ "$digits" -le 100000 ]; } || fail "PREPOST_MAX_ERRORS: $PREPOST_MAX_ERRORS is more than 100000 machines"
  fi
fi

command -v az >/dev/null 2>&1 || fail "the hooks need the Azure CLI (az), signed in to the same tenant"

configuration_subscription=$(echo "$PREPOST_MAINTENANCE_CONFIGURATION_ID" | cut -d/ -f3)
app_subscription=${AZURE_SUBSCRIPTION_ID:-$(az account show --query id -o tsv)}

# The configuration must exist and be readable by whoever deploys (az resource show fails otherwise).
az resource show --ids "$PREPOST_MAINTENANCE_CONFIGURATION_ID" --query id -o tsv >/dev/null ||
  fail "cannot read $PREPOST_MAINTENANCE_CONFIGURATION_ID: check the id and your access"

# Resource providers the templates use: registering one needs rights on the subscription
# (Microsoft.<provider>/register/action, in Contributor and Owner), so this only checks.
check_provider() {
  state=$(az provider show --subscription "$1" --namespace "$2" --query registrationState -o tsv 2>/dev/null || echo Unknown)
  [ "$state" = "Registered" ] ||
    fail "resource provider $2 is '$state' in subscription $1: az provider register --subscription $1 --namespace $2 --wait"
}
for provider in Microsoft.Web Microsoft.Storage Microsoft.Insights Microsoft.OperationalInsights Microsoft.EventGrid; do
  check_provider "$app_subscription" "$provider"
done
if [ "${PREPOST_TRANSPORT:-storage}" = "servicebus" ]; then
  check_provider "$app_subscription" Microsoft.ServiceBus
fi
check_provider "$configuration_subscription" Microsoft.Maintenance
check_provider "$configuration_subscription" Microsoft.EventGrid

echo "prepost: settings and resource providers look right"
