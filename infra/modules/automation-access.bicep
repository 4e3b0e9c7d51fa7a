// The right to run runbook jobs on ONE Automation account, for pre/post scripts with the
// `automation` backend (docs/hooks.md): a custom role holding the four job actions prepost's
// calls need, assigned on the account and nothing wider. Deployed into the account's resource
// group by main.bicep only when hookAutomationAccountId is set.
//
// The actions are those of the built-in Automation Job Operator role that prepost uses (create a
// job, read it, read its output, stop it); that role also lets its holder suspend and resume jobs,
// read their streams and manage job schedules, which prepost never does.
// https://learn.microsoft.com/azure/automation/automation-role-based-access-control
//
// A job runs a runbook on a hybrid worker with the worker's rights: whoever may create jobs here
// may run any runbook of the account on any of its hybrid worker groups.
//
// Creating the role and the assignment needs Owner or User Access Administrator on the resource
// group (roleDefinitions/write and roleAssignments/write).

@description('Name of the Automation account (in this resource group).')
param automationAccountName string

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

resource account 'Microsoft.Automation/automationAccounts@2023-11-01' existing = {
  name: automationAccountName
}

resource automationJobRunnerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'prepost-automation-job-runner')
  properties: {
    // Role names are unique per tenant: the suffix ties this one to its resource group.
    roleName: 'prepost automation job runner ${uniqueString(resourceGroup().id)}'
    description: 'Create runbook jobs on hybrid worker groups, follow them, read their output and stop them (prepost pre and post scripts).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          // PUT {account}/jobs/{id}, GET it on follow-ups, GET its output once it ended.
          'Microsoft.Automation/automationAccounts/jobs/write'
          'Microsoft.Automation/automationAccounts/jobs/read'
          'Microsoft.Automation/automationAccounts/jobs/output/read'
          // POST {account}/jobs/{id}/stop for a job that runs past its timeout.
          'Microsoft.Automation/automationAccounts/jobs/stop/action'
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

resource automationJobRunnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, automationJobRunnerRole.id)
  scope: account
  properties: {
    roleDefinitionId: automationJobRunnerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'prepost: run the declared pre and post runbooks on hybrid worker groups'
  }
}

output roleDefinitionId string = automationJobRunnerRole.id
