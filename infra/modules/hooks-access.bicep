// Lets the function app's identity read the pre/post scripts (docs/hooks.md) from ONE blob
// container of its storage account: Storage Blob Data Reader on the container `prepost-hooks`,
// not the account. Deployed by main.bicep only when enableHooks is true.
//
// The app's Storage Blob Data Owner on the whole account (app-access.bicep: the Functions host
// keeps leases and keys in blobs and Flex Consumption reads its package) already covers these
// reads today; this assignment states the one data access hooks need, on the one container, so
// that it survives the host role being narrowed or moved to another account.

param storageAccountName string
param containerName string

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-blob-data-reader
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource storage 'Microsoft.Storage/storageAccounts@2025-08-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-08-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-08-01' existing = {
  parent: blobService
  name: containerName
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, storageBlobDataReader)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost function app: read the pre and post scripts'
  }
}
