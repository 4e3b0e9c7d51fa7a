// prepost: the Azure resources around one Update Manager maintenance configuration.
//
// Deployed to the resource group that holds the function app:
//
//   az deployment group create -g <app-rg> -f infra/main.bicep -p @infra/main.parameters.local.json
//
// or with `azd up` (azure.yaml; infra/main.parameters.json is filled from the azd environment).
//
// It also deploys, in other scopes:
// - the Event Grid system topic, the event subscription and the cancel permission into the
//   maintenance configuration's resource group (which may be in another subscription);
// - the app's roles on every target subscription (target-subscription-roles.bicep, a
//   subscription-scope module), unless assignTargetRoles is false;
// - with enableHooks, the prepost-hooks container and the script runner role (Run Command);
//   with hookAutomationAccountId, the job runner role on that Automation account
//   (automation-access.bicep). docs/hooks.md, "Least privilege".
// Role assignments need Owner or User Access Administrator where they are made: see
// docs/deploy.md.
//
// Two passes: Event Grid refuses a subscription to a function that does not exist yet, so
// the first deployment leaves deployEventSubscription false; publish the code, then deploy
// again with deployEventSubscription=true.

@description('Pre/post scripts inside the machines with managed Run Command (docs/hooks.md): creates the prepost-hooks blob container, lets the app read it, and assigns the script runner role on every target subscription. That role runs code as root / SYSTEM on every machine there: off unless you use hooks.')
param enableHooks bool = false

@description('Resource id of the Automation account whose runbooks run as pre/post scripts on hybrid workers (prepost-hook-backend=automation); the app gets a job runner role on it. Empty: none.')
param hookAutomationAccountId string = ''

@description('Region for the app, its storage and monitoring. Must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Prefix for resource names (letters, digits, hyphens).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'prepost'

param tags object = {
  application: 'prepost'
}

@description('Which service carries plans and VM tasks (PREPOST_TRANSPORT). Monitoring and outcomes always use Storage queues.')
@allowed([
  'storage'
  'servicebus'
])
param transport string = 'storage'

@description('Resource id of the maintenance configuration whose pre/post events prepost handles.')
@minLength(1)
param maintenanceConfigurationId string

@description('Region of that maintenance configuration (its system topic must be in the same region).')
@minLength(1)
param maintenanceConfigurationLocation string

@description('Name of the configuration\'s existing Event Grid system topic, if it has one (only one is allowed per configuration). Empty: a new topic is created.')
param systemTopicName string = ''

@description('Subscriptions whose machines the configuration patches. The app gets two custom roles on each: machine operator and alert suppressor, and the script runner with enableHooks (docs/deploy.md lists their actions).')
@minLength(1)
param targetSubscriptionIds array

@description('PREPOST_ALLOWED_CONFIGURATIONS: configuration ids the app acts for. Defaults to the configuration this deployment wires up; ["*"] allows any.')
@minLength(1)
param allowedConfigurationIds array = [
  maintenanceConfigurationId
]

@description('PREPOST_ALLOWED_SUBSCRIPTIONS: subscriptions the app may touch. Defaults to the target subscriptions plus the configuration\'s own; ["*"] allows any.')
@minLength(1)
param allowedSubscriptionIds array = union(targetSubscriptionIds, [
  split(maintenanceConfigurationId, '/')[2]
])

@description('Create the role assignments on the target subscriptions and on the maintenance configuration. False when someone else makes them (see docs/deploy.md); the app\'s principal id is an output.')
param assignTargetRoles bool = true

@description('Role that lets the app cancel a run: a custom role with Microsoft.Maintenance/applyUpdates/write on the configuration only, or the built-in Scheduled Patching Contributor.')
@allowed([
  'custom'
  'ScheduledPatchingContributor'
])
param cancelRole string = 'custom'

@description('PREPOST_SUPPRESSION_RESOURCE_GROUP: resource group, created in each target subscription, for the alert processing rules. Empty: not set.')
param suppressionResourceGroupName string = ''

@description('PREPOST_SUPPRESSION_GRACE_MINUTES.')
@minValue(0)
param suppressionGraceMinutes int = 60

@description('PREPOST_CANCEL_MARGIN_MINUTES.')
@minValue(0)
param cancelMarginMinutes int = 2

@description('PREPOST_MAX_TASK_ATTEMPTS.')
@minValue(1)
@maxValue(50)
param maxTaskAttempts int = 8

@description('PREPOST_OPERATION_CHECK_SECONDS.')
@minValue(1)
@maxValue(600)
param operationCheckSeconds int = 20

@description('Create the Event Grid subscription to the intake function. Leave false until the code is published (Event Grid checks that the function exists).')
param deployEventSubscription bool = false

@description('Event Grid delivery attempts per event (see eventgrid-subscription.bicep for the reasoning).')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 10

@description('Minutes Event Grid keeps retrying an event before dead-lettering it: pre-event work has about 20 minutes.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 20

@description('Storage replication. ZRS where the region has availability zones, LRS otherwise.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Flex Consumption instance cap (40 to 1000): also bounds how hard the app can hit ARM.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Action groups the alerts (modules/alerts.bicep) notify; empty: alerts show in the portal only.')
param alertActionGroupIds array = []

@description('PREPOST_TELEMETRY: on sends logs with their run, phase, task and queue dimensions, and metrics, with OpenTelemetry.')
@allowed([
  'on'
  'off'
])
param telemetry string = 'on'

@description('PREPOST_SERVICEBUS_SETTLEMENT, only with transport servicebus: classic (the host settles), or explicit (opt-in: the functions settle and dead-letter; a worker without the settlement client then loads no function, docs/servicebus.md).')
@allowed([
  'classic'
  'explicit'
])
param serviceBusSettlement string = 'classic'

// The readiness gate's defaults, for configurations without prepost-* policy tags (docs/policy.md).
// The defaults here are the app's own: cancel the run when any safety-critical pre-work fails.
@description('PREPOST_MAX_ERRORS: machines whose safety-critical pre-work may fail before the run is cancelled, a count (3) or a percentage (10%). The app refuses to start on anything else.')
@minLength(1)
@maxLength(7)
param maxErrors string = '0'

// An array so that ARM checks every element against @allowed before deploying
// (https://learn.microsoft.com/azure/azure-resource-manager/bicep/parameters#use-decorators).
@description('PREPOST_SAFETY_CRITICAL: pre-work whose failure counts against the error budget. [] counts nothing (the setting says none).')
@allowed([
  'snapshot'
  'start'
  'preflight'
  'pre-script'
])
param safetyCritical array = [
  'snapshot'
  'start'
  'preflight'
  'pre-script'
]

@description('PREPOST_CANCEL_ON_FAILURE: false records failures but never cancels a run.')
param cancelOnFailure bool = true

@description('PREPOST_READINESS_CONFIGURATIONS: maintenance configuration ids the readiness_check timer checks daily at 05:00 UTC (docs/preflight.md). Empty: it checks nothing.')
param readinessConfigurationIds array = []

@description('PREPOST_ARM_BUCKETS: ARM token buckets the rate control models per subscription, e.g. reads=100/10,writes=50/5 for a subscription with smaller limits (docs/rate-control.md). Empty: Azure\'s published sizes.')
param armBuckets string = ''

// The Event Grid-triggered function, as shared/names.py INTAKE_FUNCTION names it.
var intakeFunctionName = 'maintenance_event_intake'

var configIdParts = split(maintenanceConfigurationId, '/')
var configSubscriptionId = configIdParts[2]
var configResourceGroupName = configIdParts[4]
var configName = last(configIdParts)

// Without an Automation account the module is skipped, but ARM still evaluates its scope: point
// it at this deployment's own resource group then.
var automationIdParts = split(empty(hookAutomationAccountId) ? '${resourceGroup().id}/providers/Microsoft.Automation/automationAccounts/unused' : hookAutomationAccountId, '/')

var token = uniqueString(resourceGroup().id, namePrefix)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var names = {
  plan: '${namePrefix}-plan-${token}'
  app: '${namePrefix}-func-${token}'
  storage: take('${compactPrefix}${token}', 24)
  logAnalytics: '${namePrefix}-log-${token}'
  appInsights: '${namePrefix}-appi-${token}'
  serviceBus: '${namePrefix}-sb-${token}'
  deploymentContainer: 'app-package-${token}'
  deadLetterContainer: 'eventgrid-deadletter'
  // shared/names.py HOOKS_CONTAINER: the app reads scripts from this container.
  hooksContainer: 'prepost-hooks'
  systemTopic: empty(systemTopicName) ? '${namePrefix}-${uniqueString(maintenanceConfigurationId)}' : systemTopicName
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'prepost-monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.appInsights
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'prepost-storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    skuName: storageSku
    deploymentContainerName: names.deploymentContainer
    deadLetterContainerName: names.deadLetterContainer
    hooksContainerName: enableHooks ? names.hooksContainer : ''
  }
}

module serviceBus 'modules/servicebus.bicep' = if (transport == 'servicebus') {
  name: 'prepost-servicebus'
  params: {
    name: names.serviceBus
    location: location
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'prepost-functionapp'
  params: {
    planName: names.plan
    appName: names.app
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    transport: transport
    serviceBusFullyQualifiedNamespace: (transport == 'servicebus') ? serviceBus.outputs.fullyQualifiedNamespace : ''
    allowedConfigurations: join(allowedConfigurationIds, ',')
    allowedSubscriptions: join(allowedSubscriptionIds, ',')
    suppressionResourceGroupName: suppressionResourceGroupName
    suppressionGraceMinutes: suppressionGraceMinutes
    cancelMarginMinutes: cancelMarginMinutes
    maxTaskAttempts: maxTaskAttempts
    operationCheckSeconds: operationCheckSeconds
    maximumInstanceCount: maximumInstanceCount
    telemetry: telemetry
    serviceBusSettlement: serviceBusSettlement
    maxErrors: maxErrors
    safetyCritical: safetyCritical
    cancelOnFailure: cancelOnFailure
    readinessConfigurations: join(readinessConfigurationIds, ',')
    armBuckets: armBuckets
  }
}

module appAccess 'modules/app-access.bicep' = {
  name: 'prepost-app-access'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceName: (transport == 'servicebus') ? serviceBus.outputs.name : ''
  }
}

// One subscription-scope deployment per target subscription (targetScope = 'subscription').
module targetRoles 'modules/target-subscription-roles.bicep' = [
  for subscriptionId in (assignTargetRoles ? targetSubscriptionIds : []): {
    name: 'prepost-roles-${subscriptionId}'
    scope: subscription(subscriptionId)
    params: {
      principalId: functionApp.outputs.principalId
      suppressionResourceGroupName: suppressionResourceGroupName
      location: location
      tags: tags
      enableHooks: enableHooks
    }
  }
]

module maintenanceAccess 'modules/maintenance-access.bicep' = if (assignTargetRoles) {
  name: 'prepost-maintenance-access'
  scope: resourceGroup(configSubscriptionId, configResourceGroupName)
  params: {
    maintenanceConfigurationName: configName
    principalId: functionApp.outputs.principalId
    cancelRole: cancelRole
  }
}

module hooksAccess 'modules/hooks-access.bicep' = if (enableHooks) {
  name: 'prepost-hooks-access'
  params: {
    storageAccountName: storage.outputs.name
    containerName: storage.outputs.hooksContainerName
    principalId: functionApp.outputs.principalId
  }
}

module automationAccess 'modules/automation-access.bicep' = if (assignTargetRoles && !empty(hookAutomationAccountId)) {
  name: 'prepost-automation-access'
  scope: resourceGroup(automationIdParts[2], automationIdParts[4])
  params: {
    automationAccountName: last(automationIdParts)
    principalId: functionApp.outputs.principalId
  }
}

module eventTopic 'modules/eventgrid-topic.bicep' = {
  name: 'prepost-eventgrid-topic'
  scope: resourceGroup(configSubscriptionId, configResourceGroupName)
  params: {
    name: names.systemTopic
    location: maintenanceConfigurationLocation
    maintenanceConfigurationId: maintenanceConfigurationId
    tags: tags
  }
}

module deadLetterAccess 'modules/deadletter-access.bicep' = {
  name: 'prepost-deadletter-access'
  params: {
    storageAccountName: storage.outputs.name
    containerName: storage.outputs.deadLetterContainerName
    principalId: eventTopic.outputs.principalId
  }
}

module eventSubscription 'modules/eventgrid-subscription.bicep' = if (deployEventSubscription) {
  name: 'prepost-eventgrid-subscription'
  scope: resourceGroup(configSubscriptionId, configResourceGroupName)
  params: {
    systemTopicName: eventTopic.outputs.name
    functionAppId: functionApp.outputs.id
    intakeFunctionName: intakeFunctionName
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
  dependsOn: [
    deadLetterAccess
  ]
}

// Poison and dead-letter messages, cancelled runs and failed phases (its own module file).
module alerts 'modules/alerts.bicep' = {
  name: 'prepost-alerts'
  params: {
    namePrefix: namePrefix
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    serviceBusNamespaceName: (transport == 'servicebus') ? serviceBus.outputs.name : ''
    actionGroupIds: alertActionGroupIds
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppId string = functionApp.outputs.id
@description('Object id of the app\'s managed identity: for role assignments made outside this deployment.')
output principalId string = functionApp.outputs.principalId
output storageAccountName string = storage.outputs.name
output deadLetterContainer string = storage.outputs.deadLetterContainerName
output systemTopicId string = eventTopic.outputs.id
output intakeFunctionResourceId string = '${functionApp.outputs.id}/functions/${intakeFunctionName}'
output eventSubscriptionDeployed bool = deployEventSubscription
output serviceBusNamespace string = (transport == 'servicebus') ? serviceBus.outputs.fullyQualifiedNamespace : ''

// For azd (azure.yaml): every output becomes a variable of the azd environment; the hooks in
// infra/hooks read these. PREPOST_EVENT_SUBSCRIPTION_PARAMETERS holds the parameters of
// eventgrid-subscription.bicep, the same values as the eventSubscription module above, as a
// deployment parameters object, so the post-deploy hook deploys that module with them once the
// code is published (tests/infra/test_azd.py checks that the two agree).
output PREPOST_FUNCTION_APP_NAME string = functionApp.outputs.name
output PREPOST_INTAKE_FUNCTION string = intakeFunctionName
output PREPOST_CONFIGURATION_SUBSCRIPTION_ID string = configSubscriptionId
output PREPOST_CONFIGURATION_RESOURCE_GROUP string = configResourceGroupName
output PREPOST_EVENT_TOPIC_NAME string = eventTopic.outputs.name
output PREPOST_EVENT_SUBSCRIPTION_PARAMETERS string = string({
  systemTopicName: {
    value: eventTopic.outputs.name
  }
  functionAppId: {
    value: functionApp.outputs.id
  }
  intakeFunctionName: {
    value: intakeFunctionName
  }
  deadLetterStorageAccountId: {
    value: storage.outputs.id
  }
  deadLetterContainerName: {
    value: storage.outputs.deadLetterContainerName
  }
  maxDeliveryAttempts: {
    value: eventMaxDeliveryAttempts
  }
  eventTimeToLiveInMinutes: {
    value: eventTimeToLiveInMinutes
  }
})
