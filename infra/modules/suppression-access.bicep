// The alert suppressor role on the suppression resource group alone
// (PREPOST_SUPPRESSION_RESOURCE_GROUP): the app creates and deletes alert processing rules only
// there. Deployed by target-subscription-roles.bicep into that resource group.

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@description('Resource id of the alert suppressor role definition (target-subscription-roles.bicep).')
param roleDefinitionId string

resource alertSuppressorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: mute alerts on the machines of a maintenance run, with rules in this resource group'
  }
}
