// Roles for the function app's identity on ONE target subscription (a subscription whose
// machines are patched by the maintenance configuration). Subscription-scope role assignments
// need a subscription-scope deployment, hence targetScope. main.bicep deploys this module once
// per entry of targetSubscriptionIds; it can also be deployed on its own:
//
//   az deployment sub create --subscription <target-subscription-id> --location <region> \
//     --template-file infra/modules/target-subscription-roles.bicep \
//     --parameters principalId=<app principal id>
//
// Whoever deploys it needs Owner, User Access Administrator or Role Based Access Control
// Administrator on the subscription (Microsoft.Authorization/roleAssignments/write).

targetScope = 'subscription'

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@description('If set, this resource group is created in the subscription to hold the alert processing rules (PREPOST_SUPPRESSION_RESOURCE_GROUP).')
param suppressionResourceGroupName string = ''

@description('Region for the suppression resource group (its rules are global).')
param location string = deployment().location

param tags object = {}

// Built-in role definition ids and why the app needs each one:
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = [
  {
    // Resource Graph (maintenanceresources: which machines a run patches), VM and Arc machine
    // state, disk ids, Update Manager run status. Resource Graph only returns what the caller
    // can read: without Reader a run looks like "no machines".
    name: 'Reader'
    id: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
  }
  {
    // Start machines before patching, deallocate the ones prepost started afterwards.
    name: 'Virtual Machine Contributor'
    id: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'
  }
  {
    // Incremental snapshots of OS and data disks before patching, and pruning old ones.
    name: 'Disk Snapshot Contributor'
    id: '7efff54f-a5b4-42b5-a1c5-5411624893ce'
  }
  {
    // Alert processing rules (Microsoft.AlertsManagement/actionRules) that mute alerts on the
    // run's machines during the window, and their removal afterwards.
    name: 'Monitoring Contributor'
    id: '749f88d5-cbae-40b8-bcfc-e573ddc772fa'
  }
]

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in roles: {
    name: guid(subscription().id, principalId, role.id)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'prepost: ${role.name} for pre/post maintenance work'
    }
  }
]

resource suppressionGroup 'Microsoft.Resources/resourceGroups@2025-04-01' = if (!empty(suppressionResourceGroupName)) {
  // ARM still validates the name of a skipped resource, so it must never be empty.
  name: empty(suppressionResourceGroupName) ? 'unused' : suppressionResourceGroupName
  location: location
  tags: tags
}

output assignedRoles array = [for role in roles: role.name]
