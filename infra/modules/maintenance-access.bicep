// The right to cancel a scheduled run, granted on the maintenance configuration itself and
// nothing wider. Deployed into the configuration's resource group.
//
// Cancelling is a PUT of {"properties":{"status":"Cancel"}} on
// <configuration id>/providers/Microsoft.Maintenance/applyUpdates/<start>, so the identity needs
// Microsoft.Maintenance/applyUpdates/write on the configuration. By default a custom role grants
// exactly that, plus reading the configuration (its tags carry the run policy): the two actions
// tests/infra/test_roles.py derives from the adapters' calls. 'ScheduledPatchingContributor'
// uses the built-in role instead, for tenants that do not allow custom roles; it also lets the
// app change the configuration and its assignments, which prepost never needs.
//
// Creating the custom role and the assignment needs Owner or User Access Administrator on the
// resource group (roleDefinitions/write and roleAssignments/write).

@description('Name of the maintenance configuration (in this resource group).')
param maintenanceConfigurationName string

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@allowed([
  'custom'
  'ScheduledPatchingContributor'
])
param cancelRole string = 'custom'

var scheduledPatchingContributorId = 'cd08ab90-6b14-449c-ad9a-8f8e549482c6'
var customRoleName = guid(resourceGroup().id, 'prepost-cancel-maintenance-run')
var roleGuid = cancelRole == 'custom' ? customRoleName : scheduledPatchingContributorId
var roleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)

resource configuration 'Microsoft.Maintenance/maintenanceConfigurations@2023-04-01' existing = {
  name: maintenanceConfigurationName
}

resource cancelRunRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (cancelRole == 'custom') {
  name: customRoleName
  properties: {
    // Role names are unique per tenant: the suffix ties this one to its resource group.
    roleName: 'prepost maintenance run canceller ${uniqueString(resourceGroup().id)}'
    description: 'Read a maintenance configuration and cancel a scheduled run of it (prepost).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          // The configuration's tags (run policy); the cancel PUT on its applyUpdates run.
          'Microsoft.Maintenance/maintenanceConfigurations/read'
          'Microsoft.Maintenance/applyUpdates/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource cancelRunAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(configuration.id, principalId, roleDefinitionId)
  scope: configuration
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: cancel a scheduled run when pre-maintenance work fails'
  }
  dependsOn: [
    cancelRunRole
  ]
}

output roleDefinitionId string = roleDefinitionId
