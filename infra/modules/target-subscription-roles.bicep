// What the function app's identity may do on ONE target subscription (a subscription whose
// machines the maintenance configuration patches): custom roles holding exactly the actions
// prepost's calls need, instead of Reader, Virtual Machine Contributor (which includes Run
// Command), Disk Snapshot Contributor (storage listkeys, disk SAS) and Monitoring Contributor.
// docs/deploy.md maps each action to the call that needs it; tests/infra/test_roles.py derives
// the actions from the adapters' requests against the simulator and compares them with these.
//
// Subscription-scope role definitions and assignments need a subscription-scope deployment,
// hence targetScope. main.bicep deploys this module once per entry of targetSubscriptionIds; it
// can also be deployed on its own:
//
//   az deployment sub create --subscription <target-subscription-id> --location <region> \
//     --template-file infra/modules/target-subscription-roles.bicep \
//     --parameters principalId=<app principal id> [suppressionResourceGroupName=<rg>] [enableHooks=true]
//
// Whoever deploys it needs Owner or User Access Administrator on the subscription
// (Microsoft.Authorization/roleDefinitions/write and roleAssignments/write).

targetScope = 'subscription'

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@description('If set, this resource group is created in the subscription to hold the alert processing rules (PREPOST_SUPPRESSION_RESOURCE_GROUP), and the alert role is granted on it alone.')
param suppressionResourceGroupName string = ''

@description('Region for the suppression resource group (its rules are global).')
param location string = deployment().location

param tags object = {}

@description('Pre/post scripts inside the machines (docs/hooks.md): also create and assign the script runner role, which can run code as root / SYSTEM on every machine of the subscription.')
param enableHooks bool = false

// Role names are unique per tenant and each definition is assignable in its own subscription
// only, so the subscription id is part of the name.
resource machineOperatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'prepost-machine-operator')
  properties: {
    roleName: 'prepost machine operator (${subscription().subscriptionId})'
    description: 'Find the machines of a maintenance run, read VM, disk and Arc server state, start and deallocate VMs, and take and prune disk snapshots (prepost).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          // Resource Graph query for the run's machines; it returns only the
          // maintenanceresources rows (applyUpdates under each machine) the caller may read.
          'Microsoft.ResourceGraph/resources/read'
          'Microsoft.Maintenance/applyUpdates/read'
          // VM state with its instance view (GET with $expand=instanceView is a read), start,
          // deallocate; the disks to snapshot and their region.
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/start/action'
          'Microsoft.Compute/virtualMachines/deallocate/action'
          'Microsoft.Compute/disks/read'
          // Incremental snapshots before patching; pruning old ones.
          'Microsoft.Compute/snapshots/read'
          'Microsoft.Compute/snapshots/write'
          'Microsoft.Compute/snapshots/delete'
          // Not called by prepost: ARM checks it on the source disk when a snapshot is created
          // from it, and refuses the snapshot (LinkedAuthorizationFailed) without it.
          'Microsoft.Compute/disks/beginGetAccess/action'
          // Arc-enabled server connection status, agent version and upgrade setting (preflight).
          'Microsoft.HybridCompute/machines/read'
          // Arc extensions in a failed state (preflight).
          'Microsoft.HybridCompute/machines/extensions/read'
          // Resource Graph answers configuration assignments only to a caller who may read them
          // (preflight and the readiness timer resolve a configuration's machines from them).
          'Microsoft.Maintenance/configurationAssignments/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource alertSuppressorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'prepost-alert-suppressor')
  properties: {
    roleName: 'prepost alert suppressor (${subscription().subscriptionId})'
    description: 'Create, read and delete the alert processing rules that mute alerts on a maintenance run\'s machines (prepost).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.AlertsManagement/actionRules/read'
          'Microsoft.AlertsManagement/actionRules/write'
          'Microsoft.AlertsManagement/actionRules/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

// Run Command runs a script as root / SYSTEM: whoever holds these actions can take over every
// machine of the subscription. So they are in a role of their own, created and assigned only
// when hooks are enabled, never in the machine operator role that every deployment assigns.
// Arc run command actions: https://learn.microsoft.com/azure/azure-arc/servers/run-command
// (listed as "runcommands" in the operations list, which is how they are spelled here).
resource scriptRunnerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableHooks) {
  name: guid(subscription().id, 'prepost-script-runner')
  properties: {
    roleName: 'prepost script runner (${subscription().subscriptionId})'
    description: 'Run the declared pre and post scripts inside the machines of a maintenance run with managed Run Command, follow them and remove them (prepost). Runs code as root / SYSTEM.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          // Create the run command (runs the script), read its instance view, delete it.
          'Microsoft.Compute/virtualMachines/runCommands/read'
          'Microsoft.Compute/virtualMachines/runCommands/write'
          'Microsoft.Compute/virtualMachines/runCommands/delete'
          // The same on Arc-enabled servers.
          'Microsoft.HybridCompute/machines/runcommands/read'
          'Microsoft.HybridCompute/machines/runcommands/write'
          'Microsoft.HybridCompute/machines/runcommands/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource scriptRunnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableHooks) {
  name: guid(subscription().id, principalId, 'prepost-script-runner')
  properties: {
    roleDefinitionId: scriptRunnerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: run the declared pre and post scripts inside the machines of this subscription'
  }
}

resource machineOperatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, machineOperatorRole.id)
  properties: {
    roleDefinitionId: machineOperatorRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: pre/post maintenance work on the machines of this subscription'
  }
}

resource suppressionGroup 'Microsoft.Resources/resourceGroups@2025-04-01' = if (!empty(suppressionResourceGroupName)) {
  // ARM still validates the name of a skipped resource, so it must never be empty.
  name: empty(suppressionResourceGroupName) ? 'unused' : suppressionResourceGroupName
  location: location
  tags: tags
}

// Without a suppression resource group the app puts each rule in the resource group of the
// run's first machine in the subscription, so the role must cover the subscription.
resource alertSuppressorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(suppressionResourceGroupName)) {
  name: guid(subscription().id, principalId, alertSuppressorRole.id)
  properties: {
    roleDefinitionId: alertSuppressorRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: mute alerts on the machines of a maintenance run'
  }
}

module suppressionGroupAccess 'suppression-access.bicep' = if (!empty(suppressionResourceGroupName)) {
  name: 'prepost-suppression-access'
  scope: resourceGroup(empty(suppressionResourceGroupName) ? 'unused' : suppressionResourceGroupName)
  params: {
    principalId: principalId
    roleDefinitionId: alertSuppressorRole.id
  }
  dependsOn: [
    suppressionGroup
  ]
}

output machineOperatorRoleId string = machineOperatorRole.id
output alertSuppressorRoleId string = alertSuppressorRole.id
output scriptRunnerRoleId string = enableHooks ? scriptRunnerRole.id : ''
output alertSuppressorScope string = empty(suppressionResourceGroupName) ? subscription().id : '${subscription().id}/resourceGroups/${suppressionResourceGroupName}'
