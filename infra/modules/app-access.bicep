// Data-plane roles for the function app's managed identity on the resources in its own
// resource group. Separate from functionapp.bicep because a role assignment's name must be
// known when the deployment starts, and the principal id is only known once the app exists:
// passed in as a module parameter, it is.

param principalId string
param storageAccountName string
param applicationInsightsName string

@description('Service Bus namespace name; empty when transport is storage.')
param serviceBusNamespaceName string = ''

// Built-in role definition ids:
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = {
  // Host storage: the Functions host keeps leases, timers and keys in blobs, and Flex
  // Consumption reads the deployment package: the host docs ask for Blob Data Owner.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Queue triggers, sends with a delay, moving messages to poison queues.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Runs, tasks, machines, idempotency and event records.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Telemetry with Entra ID authentication (the component has local auth disabled).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
}

var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

var serviceBusRoles = [
  roles.serviceBusDataSender
  roles.serviceBusDataReceiver
]

resource storage 'Microsoft.Storage/storageAccounts@2025-08-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoles: {
    name: guid(storage.id, principalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'prepost function app: host storage, queues and tables'
    }
  }
]

resource telemetryAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost function app: send telemetry with Entra ID authentication'
  }
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2026-01-01' existing = {
  name: serviceBusNamespaceName
}

// Namespace scope: the namespace holds only prepost's two queues. The loop runs over an empty
// list when there is no namespace (transport storage).
resource serviceBusAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (empty(serviceBusNamespaceName) ? [] : serviceBusRoles): {
    name: guid(serviceBus.id, principalId, roleId)
    scope: serviceBus
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'prepost function app: send and receive plan and VM task messages'
    }
  }
]
