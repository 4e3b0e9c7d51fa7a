// The function app on a Flex Consumption plan (Linux, Python 3.11) with a system-assigned
// managed identity. Every connection is identity-based; no secret is stored in app settings.
//
// App setting names are the ones shared/names.py defines (SettingName, STORAGE_CONNECTION,
// SERVICEBUS_CONNECTION); tests/infra/test_bicep.py checks that they agree.
//
// Flex Consumption takes the runtime and scale settings from functionAppConfig, and rejects or
// ignores the classic settings (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENTSHARE, ...), so none of them appear here:
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations

param planName string
param appName string
param location string
param tags object = {}

param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string
@description('Application Insights component in this resource group.')
param applicationInsightsName string

@allowed([
  'storage'
  'servicebus'
])
param transport string

@description('Service Bus host name (NAME.servicebus.windows.net); required when transport is servicebus.')
param serviceBusFullyQualifiedNamespace string = ''

@description('Comma-separated maintenance configuration resource ids prepost acts for (PREPOST_ALLOWED_CONFIGURATIONS).')
@minLength(1)
param allowedConfigurations string

@description('Comma-separated subscription ids prepost may touch (PREPOST_ALLOWED_SUBSCRIPTIONS).')
@minLength(1)
param allowedSubscriptions string

@description('Resource group, in each target subscription, that holds the alert processing rules. Empty: the app decides.')
param suppressionResourceGroupName string = ''

@description('PREPOST_SUPPRESSION_GRACE_MINUTES: how long alerts stay muted after the window if the post-event never comes.')
@minValue(0)
param suppressionGraceMinutes int = 60

@description('PREPOST_CANCEL_MARGIN_MINUTES: safety margin before the cancellation cut-off.')
@minValue(0)
param cancelMarginMinutes int = 2

@description('PREPOST_MAX_TASK_ATTEMPTS: attempts per machine task before it is recorded as failed.')
@minValue(1)
@maxValue(50)
param maxTaskAttempts int = 8

@description('PREPOST_OPERATION_CHECK_SECONDS: seconds between looks at a long Azure operation (VM start or deallocation, snapshots) a task began.')
@minValue(1)
@maxValue(600)
param operationCheckSeconds int = 20

@description('Upper bound on instances. 40 is the lowest value Flex Consumption accepts; it also bounds parallel calls to ARM.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('PREPOST_TELEMETRY: on exports logs (with their dimensions) and metrics with OpenTelemetry to Application Insights.')
@allowed([
  'on'
  'off'
])
param telemetry string = 'off'

@description('PREPOST_SERVICEBUS_SETTLEMENT (only with transport servicebus): classic, or explicit (opt-in; docs/servicebus.md).')
@allowed([
  'classic'
  'explicit'
])
param serviceBusSettlement string = 'classic'

@description('PREPOST_MAX_ERRORS: the error budget where a configuration has no prepost-max-errors tag, a count (3) or a percentage (10%).')
@minLength(1)
param maxErrors string = '0'

@description('PREPOST_SAFETY_CRITICAL: pre-work whose failure counts against the budget where a configuration has no prepost-safety-critical tag. Empty: none.')
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

@description('PREPOST_CANCEL_ON_FAILURE: whether the gate cancels a run at all where a configuration has no prepost-cancel-on-failure tag.')
param cancelOnFailure bool = true

@description('PREPOST_READINESS_CONFIGURATIONS: comma-separated configuration ids the readiness_check timer checks daily. Empty: not set, the timer checks nothing.')
param readinessConfigurations string = ''

@description('PREPOST_ARM_BUCKETS: ARM token buckets per class, e.g. reads=250/25,writes=200/10. Empty: not set, Azure\'s published sizes.')
param armBuckets string = ''

var baseSettings = [
  {
    // Host storage, queue/table bindings and the app's own clients, with the managed identity.
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    // Telemetry is sent with the system-assigned identity (the component has local auth off).
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
  {
    name: 'PREPOST_TRANSPORT'
    value: transport
  }
  {
    name: 'PREPOST_ALLOWED_CONFIGURATIONS'
    value: allowedConfigurations
  }
  {
    name: 'PREPOST_ALLOWED_SUBSCRIPTIONS'
    value: allowedSubscriptions
  }
  {
    name: 'PREPOST_SUPPRESSION_GRACE_MINUTES'
    value: string(suppressionGraceMinutes)
  }
  {
    name: 'PREPOST_CANCEL_MARGIN_MINUTES'
    value: string(cancelMarginMinutes)
  }
  {
    name: 'PREPOST_MAX_TASK_ATTEMPTS'
    value: string(maxTaskAttempts)
  }
  {
    name: 'PREPOST_OPERATION_CHECK_SECONDS'
    value: string(operationCheckSeconds)
  }
  {
    name: 'PREPOST_TELEMETRY'
    value: telemetry
  }
  {
    name: 'PREPOST_MAX_ERRORS'
    value: maxErrors
  }
  {
    // The setting's spelling of an empty list is none (an empty value would mean the default).
    name: 'PREPOST_SAFETY_CRITICAL'
    value: empty(safetyCritical) ? 'none' : join(safetyCritical, ',')
  }
  {
    name: 'PREPOST_CANCEL_ON_FAILURE'
    value: cancelOnFailure ? 'true' : 'false'
  }
]

var serviceBusSettings = (transport == 'servicebus') ? [
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'PREPOST_SERVICEBUS_SETTLEMENT'
    value: serviceBusSettlement
  }
] : []

var suppressionSettings = empty(suppressionResourceGroupName) ? [] : [
  {
    name: 'PREPOST_SUPPRESSION_RESOURCE_GROUP'
    value: suppressionResourceGroupName
  }
]

// Optional settings are left out when empty, as the suppression resource group is: the app reads
// an absent setting as its default, and the portal then shows only what was chosen.
var readinessSettings = empty(readinessConfigurations) ? [] : [
  {
    name: 'PREPOST_READINESS_CONFIGURATIONS'
    value: readinessConfigurations
  }
]

var armBucketSettings = empty(armBuckets) ? [] : [
  {
    name: 'PREPOST_ARM_BUCKETS'
    value: armBuckets
  }
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2026-07-15' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption depends on the region; a zone outage delays work (Event Grid and the queues retry) but loses none.
  properties: {
    reserved: true
  }
}

// azd deploys the code of the azure.yaml service of this name to the resource with this tag.
var azdServiceName = 'prepost'

resource site 'Microsoft.Web/sites@2026-07-15' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // checkov:skip=CKV_AZURE_222:Event Grid push delivery reaches the intake function only over its public endpoint (push cannot use private endpoints); the webhook is protected by the Event Grid system key.
    publicNetworkAccess: 'Enabled'
    // checkov:skip=CKV_AZURE_17:Client certificates would reject Event Grid's deliveries, which do not present one.
    clientCertEnabled: false
    // checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero between maintenance windows by design; Event Grid and the queues hold work until an instance starts.
    // checkov:skip=CKV_AZURE_213:The app has no HTTP endpoint to probe (its only webhook is the Event Grid trigger); the platform restarts failed instances.
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(baseSettings, serviceBusSettings, suppressionSettings, readinessSettings, armBucketSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output id string = site.id
output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
